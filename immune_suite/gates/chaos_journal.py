"""Reads a Chaos Toolkit journal into what the chaos gate judges.

An experiment passes when its journal says `status: completed` and `deviated: false`, no activity of its
method or rollbacks failed, and every measurement the experiment declares in its `immune-gate`
extension (a probe's numeric output against a threshold, e.g. recovery seconds < 30) holds.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from immune_suite.verdict import Measurement

EXTENSION = "immune-gate"
_COMPARATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class ActivityRecord:
    name: str
    kind: str  # probe | action
    phase: str  # method | rollback | steady-state-before | steady-state-after
    status: str
    start: str | None
    end: str | None
    duration_s: float | None
    output: Any = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != "succeeded"

    def to_dict(self) -> dict[str, Any]:
        plain = isinstance(self.output, int | float | bool | str | dict | list | None)
        output = self.output if plain else str(self.output)
        return {"name": self.name, "kind": self.kind, "phase": self.phase, "status": self.status,
                "start": self.start, "end": self.end, "duration_s": self.duration_s, "output": output,
                "error": self.error}


@dataclass(frozen=True)
class JournalSummary:
    title: str
    status: str
    deviated: bool
    steady_before: bool | None
    steady_after: bool | None
    activities: list[ActivityRecord] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    start: str | None = None
    end: str | None = None
    duration_s: float | None = None

    @property
    def failed_activities(self) -> list[ActivityRecord]:
        return [a for a in self.activities if a.failed and a.phase in ("method", "rollback")]

    @property
    def passed(self) -> bool:
        return (self.status == "completed" and not self.deviated and not self.failed_activities
                and all(m.passed for m in self.measurements))

    def reasons(self) -> list[str]:
        reasons: list[str] = []
        if self.status != "completed":
            reasons.append(f"status {self.status}")
        if self.deviated:
            reasons.append("steady state deviated")
        reasons += [f"{a.phase} {a.kind} '{a.name}' failed: {a.error or a.status}"
                    for a in self.failed_activities]
        reasons += [f"{m.name}={m.value} (needs {m.comparator} {m.threshold})" for m in self.measurements
                    if not m.passed]
        return reasons


def _error_text(run: dict[str, Any]) -> str | None:
    exception = run.get("exception")
    if not exception:
        return None
    if isinstance(exception, list):
        return "".join(str(line) for line in exception).strip().splitlines()[-1]
    return str(exception)


def _records(runs: list[dict[str, Any]] | None, phase: str) -> list[ActivityRecord]:
    records: list[ActivityRecord] = []
    for run in runs or []:
        activity = run.get("activity", {})
        records.append(ActivityRecord(
            name=str(activity.get("name", "?")), kind=str(activity.get("type", "?")), phase=phase,
            status=str(run.get("status", "unknown")), start=run.get("start"), end=run.get("end"),
            duration_s=run.get("duration"), output=run.get("output"), error=_error_text(run),
        ))
    return records


def _steady(journal: dict[str, Any], key: str) -> tuple[bool | None, list[ActivityRecord]]:
    state = (journal.get("steady_states") or {}).get(key)
    if not state:
        return None, []
    return bool(state.get("steady_state_met")), _records(state.get("probes"), f"steady-state-{key}")


def declared_measurements(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    for extension in experiment.get("extensions", []) or []:
        if extension.get("name") == EXTENSION:
            return list(extension.get("measurements", []))
    return []


def summarise(journal: dict[str, Any], name: str) -> JournalSummary:
    experiment = journal.get("experiment", {})
    before, before_probes = _steady(journal, "before")
    after, after_probes = _steady(journal, "after")
    method = _records(journal.get("run"), "method")
    rollbacks = _records(journal.get("rollbacks"), "rollback")
    measurements: list[Measurement] = []
    for spec in declared_measurements(experiment):
        probe = next((a for a in method if a.name == spec["probe"]), None)
        value = probe.output if probe and not probe.failed and isinstance(probe.output, int | float) else None
        comparator = str(spec.get("comparator", "<"))
        threshold = float(spec["threshold"])
        measurements.append(Measurement(
            name=f"{name}: {spec['name']}", value=None if value is None else float(value),
            threshold=threshold, comparator=comparator, unit=str(spec.get("unit", "")),
            passed=value is not None and _COMPARATORS[comparator](float(value), threshold),
        ))
    return JournalSummary(
        title=str(experiment.get("title", name)), status=str(journal.get("status", "unknown")),
        deviated=bool(journal.get("deviated", False)), steady_before=before, steady_after=after,
        activities=[*before_probes, *method, *after_probes, *rollbacks], measurements=measurements,
        start=journal.get("start"), end=journal.get("end"), duration_s=journal.get("duration"),
    )
