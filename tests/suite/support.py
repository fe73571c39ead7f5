"""Helpers for the pipeline's unit tests: an in-memory target and gates with scripted outcomes.

The in-memory target keeps the same traffic model as the real ones (active colour + canary weight)
and records every call, so tests assert on what the pipeline did to traffic, not on its logs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from immune_suite.paths import REPO_ROOT
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.pipeline.gates import Gates
from immune_suite.pipeline.run_state import RunState, RunStore
from immune_suite.pipeline.runner import Pipeline
from immune_suite.progress import RecordingProgress
from immune_suite.source import resolve_source
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import (
    Color,
    ColorHealth,
    Endpoints,
    Release,
    TargetSnapshot,
    TrafficState,
)
from immune_suite.verdict import Status, Verdict


@dataclass(frozen=True)
class FakeSample:
    latency_ms: float
    ok: bool
    at: float


class MemoryTarget:
    name = "memory"

    def __init__(self) -> None:
        self.routing: TrafficState | None = None
        self.releases: dict[Color, Release | None] = {Color.BLUE: None, Color.GREEN: None}
        self.calls: list[tuple[str, Any]] = []
        self.baseline: Release | None = None
        self.recorded: dict[Color, Release] = {}  # what each colour last ran, kept when scaled down

    def ensure_running(self) -> None:
        if self.routing is None:
            self.routing = TrafficState(Color.GREEN, 0)

    def deploy(self, color: Color, release: Release, replicas: int | None = None) -> ColorHealth:
        self.calls.append(("deploy", color))
        self.releases[color] = release
        self.recorded[color] = release
        return self.health(color)

    def set_traffic(self, active: Color, canary_weight: int) -> TrafficState:
        self.calls.append(("traffic", (active, canary_weight)))
        self.routing = TrafficState(active, canary_weight)
        return self.routing

    def traffic(self) -> TrafficState | None:
        return self.routing

    def scale_down(self, color: Color) -> None:
        self.calls.append(("scale_down", color))
        self.releases[color] = None

    def endpoints(self) -> Endpoints:
        return Endpoints("http://ingress", "http://stable", "http://preview")

    def api_token(self, client: str = "smoke") -> str | None:
        return f"token-{client}"

    def health(self, color: Color) -> ColorHealth:
        release = self.releases[color]
        n = 2 if release else 0
        return ColorHealth(color, release is not None, n, n, n, release)

    def snapshot(self) -> TargetSnapshot:
        releases = {c.value: (r.to_dict() if r else None) for c, r in self.releases.items()}
        recorded = {c.value: r.to_dict() for c, r in self.recorded.items()}
        return TargetSnapshot(self.routing, releases, extra={"recorded": recorded})

    def restore(self, snapshot: TargetSnapshot) -> None:
        if snapshot.traffic:
            self.set_traffic(snapshot.traffic.active, snapshot.traffic.canary_weight)
        for color in Color:
            wanted = snapshot.releases.get(color.value)
            if wanted is None and self.releases[color] is not None:
                self.scale_down(color)
            elif wanted is not None:
                self.releases[color] = Release.from_dict(wanted)
        # As the Kubernetes target: each colour's record as it was, a scaled-away colour's included.
        recorded = snapshot.extra.get("recorded") or {}
        self.recorded = {c: Release.from_dict(recorded[c.value]) for c in Color if c.value in recorded}

    def chaos_config(self, candidate: Color) -> dict[str, Any]:
        return {"candidate": candidate.value}

    def start_baseline(self, release: Release, fresh: bool = False) -> None:
        self.calls.append(("start_baseline", release.version))
        self.baseline = release

    def stop_baseline(self) -> None:
        if self.baseline is not None:
            self.calls.append(("stop_baseline", self.baseline.version))
        self.baseline = None

    def baseline_running(self) -> bool:
        return self.baseline is not None

    def recorded_release(self, color: Color) -> Release | None:
        return self.recorded.get(color)

    def attribution(self) -> None:
        return None

    def served_by(self) -> Color | None:
        """Which colour ingress traffic reaches entirely, or None when split."""
        assert self.routing is not None
        if self.routing.canary_weight == 0:
            return self.routing.active
        return self.routing.active.other if self.routing.canary_weight == 100 else None


@dataclass
class LoadRunResult:
    verdict: Verdict
    samples: dict[str, list[Any]]


@dataclass
class ScriptedGates:
    """Gates whose results a test sets; load latency depends on which colour runs which release."""

    target: MemoryTarget
    security_status: Status = Status.PASS
    chaos_status: Status = Status.PASS
    fuzz_status: Status = Status.PASS
    slow_versions: set[str] = field(default_factory=set)
    raise_in_load: bool = False
    calls: list[str] = field(default_factory=list)
    rps_scales: dict[str, list[float]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(42))

    def security(self, source_dir: Path, out_dir: Path, base_url: Any, token: Any, progress: Any) -> Verdict:
        self.calls.append("security")
        assert source_dir.is_dir()
        return Verdict("security", self.security_status, f"security {self.security_status.value}")

    def load(
        self,
        base_url: str,
        token: str,
        out_dir: Path,
        shape: str,
        duration_s: float,
        progress: Any,
        extra_env: dict[str, str] | None = None,
    ) -> LoadRunResult:
        self.calls.append(f"load {base_url}")
        self.rps_scales.setdefault(base_url, []).append(float((extra_env or {})["IMMUNE_LOAD_RPS_SCALE"]))
        if self.raise_in_load:
            raise RuntimeError("locust crashed")
        routing = self.target.routing
        assert routing is not None
        if base_url == "http://stable":
            shares = {routing.active: 1.0}
        else:
            shares = {
                routing.active: (100 - routing.canary_weight) / 100,
                routing.active.other: routing.canary_weight / 100,
            }
        samples: dict[str, list[Any]] = {}
        for color, share in shares.items():
            release = self.target.releases[color]
            assert release is not None, f"traffic sent to {color} which runs nothing"
            base = 400.0 if release.version in self.slow_versions else 8.0
            # enough requests at 10 % (200) for every canary measurement to be judged (p99 needs 100)
            count = int(2000 * share)
            samples[color.value] = [
                FakeSample(base + self.rng.expovariate(1 / 3), True, float(i)) for i in range(count)
            ]
        return LoadRunResult(Verdict("load", Status.PASS, "ok"), samples)

    def chaos(self, config: dict[str, Any], out_dir: Path, experiments: list[str], progress: Any) -> Verdict:
        self.calls.append("chaos")
        return Verdict("chaos", self.chaos_status, f"chaos {self.chaos_status.value}")

    def fuzz(self, base_url: str, token: Any, out_dir: Path, progress: Any) -> Verdict:
        self.calls.append(f"fuzz {base_url}")
        return Verdict("api-fuzz", self.fuzz_status, f"fuzz {self.fuzz_status.value}")

    def as_gates(self) -> Gates:
        return Gates(self.security, self.load, self.chaos, scripted_smoke, scripted_post_check, self.fuzz)


def scripted_smoke(
    url: str, token: str, color: Color, release: Release, timeout_s: float, progress: Any, **_: Any
) -> Verdict:
    return Verdict("smoke", Status.PASS, f"smoke {url} {color.value} {release.version}")


def scripted_post_check(
    url: str, color: Color, release: Release, requests: int, progress: Any, **_: Any
) -> Verdict:
    return Verdict("post-check", Status.PASS, f"post-check {color.value}")


def release(version: str, digest: str | None = None) -> Release:
    """A release of this working tree named `version` (its tree's digest unless `digest` is given: an
    image digest, as releases built into images carry)."""
    source = resolve_source(REPO_ROOT)
    return Release(version, source.ref, digest or source.digest)


def promote(
    stack: StackConfig, target: MemoryTarget, gates: ScriptedGates, version: str, digest: str | None = None
) -> tuple[RunState, ExitCode]:
    """One whole promotion of `version` through the pipeline; the run and its exit code."""
    pipeline = Pipeline(stack, target, gates.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release(version, digest))
    return run, pipeline.execute(run)


def crashed_mid_canary(stack: StackConfig, target: MemoryTarget, gates: ScriptedGates) -> RunState:
    """A run as a SIGKILLed pipeline leaves it: 50% of traffic on the candidate, step `canary-50` running."""
    pipeline = Pipeline(stack, target, gates.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release("v2"))
    for step in run.plan[:5]:  # security, deploy, smoke, api-fuzz, canary-10
        outcome = pipeline._run_step(run, step)
        pipeline._advance(run, step, outcome)
    assert run.current == "canary-50"
    target.set_traffic(run.stable_color, 50)
    run.result("canary-50").status = "running"
    RunStore(stack.name).save(run)
    return run


def restarted_after_crash(
    stack: StackConfig, target: MemoryTarget, gates: ScriptedGates
) -> tuple[RunState, Pipeline]:
    """`crashed_mid_canary`, then what a restarted pipeline finds: the stored run and a fresh Pipeline."""
    crashed_mid_canary(stack, target, gates)
    stored = RunStore(stack.name).load()
    assert stored is not None
    return stored, Pipeline(stack, target, gates.as_gates(), RecordingProgress(), poll_s=0.01)
