"""The pipeline's persisted state: one JSON file per stack, written atomically after every change.

`run.json` holds the run in progress (or the last one): plan, current step, per-step results,
the snapshot to restore, the timeline. `controls.json` carries operator requests (pause, abort)
so `immune-suite abort` can reach a running pipeline without taking its lock; every request names
the run it is for, and a run obeys only its own (a request left over from an earlier run, or aimed
at another one, never reaches the next promotion). `lock` is held
(flock) by whichever process is in charge; the kernel releases it when that process dies, which
is how a rerun knows the previous run crashed rather than still running.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from immune_suite.pipeline.plan import TERMINAL, Step
from immune_suite.state_dir import private_dir, read_json, state_root, write_json_atomic
from immune_suite.targets.base import Color, Release, TargetSnapshot


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def pipeline_dir(stack: str) -> Path:
    return state_root() / "pipeline" / stack


def records_dir(stack: str) -> Path:
    return state_root() / "records" / stack


class LockHeld(RuntimeError):
    """Another process is in charge of this stack's pipeline."""


class StackLock:
    """An exclusive, non-blocking flock; released by the kernel if the holder dies (even by SIGKILL)."""

    def __init__(self, stack: str, wait_s: float = 0.0) -> None:
        self.path = private_dir(pipeline_dir(stack)) / "lock"
        self.wait_s = wait_s  # the guard holds the lock for milliseconds; commands may wait that out
        self._handle: IO[str] | None = None

    def acquire(self) -> StackLock:
        handle = open(self.path, "a+")  # held open for the lock's lifetime
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as error:
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                handle.close()
                stack = self.path.parent.name
                raise LockHeld(f"another immune-suite process is running the {stack} pipeline") from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}@{socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StackLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def is_held_elsewhere(self) -> bool:
        try:
            self.acquire()
        except LockHeld:
            return True
        self.release()
        return False


@dataclass
class StepResult:
    status: str = "pending"  # pending, running, passed, failed, skipped
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    verdict: dict[str, Any] | None = None
    reason: str | None = None


@dataclass
class RunState:
    run_id: str
    stack: str
    kind: str  # "promotion" or "rollback" (re-promotion of an earlier release)
    candidate: Release
    candidate_color: Color
    stable: Release | None
    stable_color: Color
    first_promotion: bool
    plan: list[Step]
    current: str
    status: str = "running"  # running, awaiting_approval, promoted, rolled_back, rollback_failed
    snapshot: TargetSnapshot | None = None
    steps: dict[str, StepResult] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    # step, reason, exit code of the failure that rolled back; after a failed rollback also
    # `rollback_error` and `where` (traffic and colours as read back from the target then)
    failure: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    owner: str = ""
    record_path: str | None = None
    source_commit: str = ""
    # After `rollback_failed`: when the guard (or a retrying restore) finally put traffic on stable.
    settled_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def step(self, step_id: str) -> Step:
        return next(s for s in self.plan if s.id == step_id)

    def result(self, step_id: str) -> StepResult:
        return self.steps.setdefault(step_id, StepResult())

    def note(self, event: str, **detail: Any) -> None:
        self.timeline.append({"at": now_iso(), "event": event, **detail})

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "stack": self.stack,
            "kind": self.kind,
            "candidate": self.candidate.to_dict(),
            "candidate_color": self.candidate_color.value,
            "stable": self.stable.to_dict() if self.stable else None,
            "stable_color": self.stable_color.value,
            "first_promotion": self.first_promotion,
            "plan": [s.to_dict() for s in self.plan],
            "current": self.current,
            "status": self.status,
            "snapshot": self.snapshot.to_dict() if self.snapshot else None,
            "steps": {k: vars(v) for k, v in self.steps.items()},
            "timeline": self.timeline,
            "approvals": self.approvals,
            "failure": self.failure,
            "metrics": self.metrics,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "owner": self.owner,
            "record_path": self.record_path,
            "source_commit": self.source_commit,
            "settled_at": self.settled_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(
            run_id=data["run_id"],
            stack=data["stack"],
            kind=data.get("kind", "promotion"),
            candidate=Release.from_dict(data["candidate"]),
            candidate_color=Color(data["candidate_color"]),
            stable=Release.from_dict(data["stable"]) if data.get("stable") else None,
            stable_color=Color(data["stable_color"]),
            first_promotion=bool(data["first_promotion"]),
            plan=[Step.from_dict(s) for s in data["plan"]],
            current=data["current"],
            status=data["status"],
            snapshot=TargetSnapshot.from_dict(data["snapshot"]) if data.get("snapshot") else None,
            steps={k: StepResult(**v) for k, v in data.get("steps", {}).items()},
            timeline=list(data.get("timeline", [])),
            approvals=list(data.get("approvals", [])),
            failure=data.get("failure"),
            metrics=dict(data.get("metrics", {})),
            started_at=data["started_at"],
            finished_at=data.get("finished_at"),
            owner=data.get("owner", ""),
            record_path=data.get("record_path"),
            source_commit=data.get("source_commit", ""),
            settled_at=data.get("settled_at"),
        )


class RunStore:
    """Load/save the run and the operator controls of one stack."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.dir = private_dir(pipeline_dir(stack))
        self.run_path = self.dir / "run.json"
        self.controls_path = self.dir / "controls.json"

    def load(self) -> RunState | None:
        return RunState.from_dict(read_json(self.run_path)) if self.run_path.exists() else None

    def save(self, run: RunState) -> None:
        write_json_atomic(self.run_path, run.to_dict())

    def controls(self, run_id: str | None = None) -> dict[str, Any]:
        """The pending operator requests; with `run_id`, only if they are addressed to that run."""
        controls = read_json(self.controls_path) if self.controls_path.exists() else {}
        if run_id is not None and controls.get("run_id") != run_id:
            return {}
        return controls

    def set_control(self, run_id: str, **changes: Any) -> dict[str, Any]:
        """Add requests for `run_id`; requests for any other run are dropped, never merged."""
        controls = {**self.controls(run_id), **changes, "run_id": run_id, "updated_at": now_iso()}
        write_json_atomic(self.controls_path, controls)
        return controls

    def clear_controls(self) -> None:
        self.controls_path.unlink(missing_ok=True)
