"""The one verdict shape every gate produces.

A gate measures values, compares each to a threshold and names the artifacts it wrote; the pipeline
and the signed promotion record only ever see this shape, whatever tool produced it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict word, not a password
    WARN = "warn"
    FAIL = "fail"


class Outcome(StrEnum):
    """A statistical judgement's three answers (canary analysis); `Status` stays pass/warn/fail.

    An inconclusive verdict carries `Status.FAIL` (so every `.passed` check treats "not enough
    evidence" as "not a pass") and says `details["outcome"] == "inconclusive"`.
    """

    PASS = "pass"  # noqa: S105 - a verdict word, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Measurement:
    """One measured value against its threshold; `comparator` reads `value <comparator> threshold`."""

    name: str
    value: float | None
    threshold: float | None
    comparator: str  # one of "<", "<=", ">", ">=", "==", "info"
    passed: bool
    unit: str = ""
    abort_on_fail: bool = False


@dataclass(frozen=True)
class Artifact:
    path: str
    sha256: str
    kind: str = ""  # sarif, json, junit, html, log ...

    @classmethod
    def of(cls, path: Path, kind: str = "") -> Artifact:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(path=str(path), sha256=digest, kind=kind)


@dataclass(frozen=True)
class Verdict:
    gate: str
    status: Status
    summary: str
    measurements: list[Measurement] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status is not Status.FAIL

    @property
    def outcome(self) -> Outcome:
        """`details["outcome"]` when the gate judged one (canary steps), else what the status says."""
        stated = self.details.get("outcome")
        if stated is not None:
            return Outcome(stated)
        return Outcome.FAIL if self.status is Status.FAIL else Outcome.PASS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            gate=data["gate"],
            status=Status(data["status"]),
            summary=data["summary"],
            measurements=[Measurement(**m) for m in data.get("measurements", [])],
            artifacts=[Artifact(**a) for a in data.get("artifacts", [])],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            details=data.get("details", {}),
        )

    @staticmethod
    def status_from(measurements: list[Measurement], warn_only: bool = False) -> Status:
        """FAIL when any measurement failed (WARN instead when the gate is advisory)."""
        if all(m.passed for m in measurements):
            return Status.PASS
        return Status.WARN if warn_only else Status.FAIL
