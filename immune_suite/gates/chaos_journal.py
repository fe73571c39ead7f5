"""Reads a Chaos Toolkit journal into what the chaos gate judges.

An experiment passes when its journal says `status: completed` and `deviated: false`, no activity of its
method or rollbacks failed, every activity of its method ran, and:

- every method probe is judged: Chaos Toolkit evaluates tolerances only in the steady-state hypothesis
  (a method probe's tolerance is ignored, chaostoolkit-lib issue #55, chaostoolkit issue #135), so the
  gate evaluates it here, with chaoslib's own `within_tolerance`; a method probe that has neither a
  tolerance nor an `immune-gate` measurement would judge nothing and fails the experiment;
- every method action shows an effect: its output lists what it hit (`{"affected": [...]}` from our
  actions, the list of terminated pods from chaostoolkit-kubernetes' `terminate_pods`); an action that
  hit nothing (no process killed, a selector that matched no pod, a service already stopped) or that
  reports nothing fails the experiment;
- every measurement the experiment declares in its `immune-gate` extension (a probe's numeric output
  against a threshold, e.g. recovery seconds < 30) holds.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from typing import Any

from chaoslib.hypothesis import within_tolerance

from immune_suite.verdict import Measurement

EXTENSION = "immune-gate"
_COMPARATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class ActivityRecord:
    """One activity of a Chaos Toolkit journal as the gate judged it: `start`/`end` ISO 8601 timestamps,
    `duration_s` seconds, `output` what the activity returned, `verdict` why the gate rejects it."""

    name: str
    kind: str  # probe | action
    phase: str  # method | rollback | steady-state-before | steady-state-after
    status: str
    start: str | None
    end: str | None
    duration_s: float | None
    output: Any = None
    error: str | None = None
    # Why the gate rejects an activity that Chaos Toolkit itself let pass (tolerance, no effect).
    verdict: str | None = None

    @property
    def failed(self) -> bool:
        """Chaos Toolkit reported it unsuccessful, or the gate rejected it (`verdict`)."""
        return self.status != "succeeded" or self.verdict is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, an output that JSON cannot hold as its `str()`."""
        plain = isinstance(self.output, int | float | bool | str | dict | list | None)
        output = self.output if plain else str(self.output)
        return {
            "name": self.name,
            "kind": self.kind,
            "phase": self.phase,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "duration_s": self.duration_s,
            "output": output,
            "error": self.error,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class JournalSummary:
    """One experiment's journal as the gate judged it: Chaos Toolkit's status and deviation, the steady
    states, every activity (steady-state probes, method, rollbacks), the declared measurements (recovery
    times in the unit each declares, usually seconds) and `duration_s` in seconds."""

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
    problems: list[str] = field(default_factory=list)  # the experiment itself cannot judge (see summarise)

    @property
    def failed_activities(self) -> list[ActivityRecord]:
        """The method and rollback activities that failed (steady-state probes count through `deviated`)."""
        return [a for a in self.activities if a.failed and a.phase in ("method", "rollback")]

    @property
    def passed(self) -> bool:
        """Completed, not deviated, no failed activity, no problem, every measurement within its threshold."""
        return (
            self.status == "completed"
            and not self.deviated
            and not self.failed_activities
            and not self.problems
            and all(m.passed for m in self.measurements)
        )

    def reasons(self) -> list[str]:
        """Why it did not pass, one line per cause; [] when it passed."""
        reasons: list[str] = []
        if self.status != "completed":
            reasons.append(f"status {self.status}")
        if self.deviated:
            reasons.append("steady state deviated")
        reasons += [
            f"{a.phase} probe '{a.name}' not met: {a.error or _short(a.output)}"
            for a in self.activities
            if a.phase.startswith("steady-state") and a.failed
        ]
        reasons += [
            f"{a.phase} {a.kind} '{a.name}' failed: {a.verdict or a.error or a.status}"
            for a in self.failed_activities
        ]
        reasons += self.problems
        reasons += [
            f"{m.name}={m.value} (needs {m.comparator} {m.threshold})"
            for m in self.measurements
            if not m.passed
        ]
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
        records.append(
            ActivityRecord(
                name=str(activity.get("name", "?")),
                kind=str(activity.get("type", "?")),
                phase=phase,
                status=str(run.get("status", "unknown")),
                start=run.get("start"),
                end=run.get("end"),
                duration_s=run.get("duration"),
                output=run.get("output"),
                error=_error_text(run),
            )
        )
    return records


def _steady(journal: dict[str, Any], key: str) -> tuple[bool | None, list[ActivityRecord]]:
    state = (journal.get("steady_states") or {}).get(key)
    if not state:
        return None, []
    runs = list(state.get("probes") or [])
    records = [
        replace(record, verdict="not within its tolerance")
        if run.get("tolerance_met") is False and record.status == "succeeded"
        else record
        for run, record in zip(runs, _records(runs, f"steady-state-{key}"), strict=True)
    ]
    return bool(state.get("steady_state_met")), records


def declared_measurements(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    """The experiment's `immune-gate` extension measurements: `{"name", "probe", "comparator", "threshold",
    "unit"}` each (the probe's numeric output is the value); [] when it declares none."""
    for extension in experiment.get("extensions", []) or []:
        if extension.get("name") == EXTENSION:
            return list(extension.get("measurements", []))
    return []


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tolerance_verdict(activity: dict[str, Any], output: Any) -> str | None:
    """None when the method probe's output is within its tolerance, else why not."""
    tolerance = activity.get("tolerance")
    if isinstance(tolerance, dict) and tolerance.get("type") == "probe":
        # The gate judges what was recorded; it never runs an activity of its own.
        return "a probe-typed tolerance cannot be judged from the journal"
    try:
        met = bool(within_tolerance(tolerance, output))
    except Exception as exc:
        return f"tolerance {_short(tolerance)} could not be evaluated: {exc}"
    return None if met else f"output {_short(output)} not within tolerance {_short(tolerance)}"


def _effect_verdict(output: Any) -> str | None:
    """None when a method action's output names what it hit, else why it counts as no effect."""
    if isinstance(output, dict) and "affected" in output:
        return None if output["affected"] else f"affected nothing ({_short(output)})"
    if isinstance(output, list):  # chaostoolkit-kubernetes terminate_pods: names of the deleted pods
        return None if output else "affected nothing (empty result: the selector matched nothing)"
    return f"reports no effect (output {_short(output)}); a fault action must list what it hit"


def _judge_method(
    run: list[dict[str, Any]], method: list[ActivityRecord], measured: set[str]
) -> list[ActivityRecord]:
    judged: list[ActivityRecord] = []
    for entry, record in zip(run, method, strict=True):
        activity = entry.get("activity", {})
        verdict: str | None = None
        if record.status == "succeeded" and record.kind == "probe":
            if "tolerance" in activity:
                verdict = _tolerance_verdict(activity, record.output)
            elif record.name not in measured:
                verdict = "judges nothing: a method probe needs a tolerance or an immune-gate measurement"
        elif record.status == "succeeded" and record.kind == "action":
            verdict = _effect_verdict(record.output)
        judged.append(replace(record, verdict=verdict) if verdict else record)
    return judged


def summarise(journal: dict[str, Any], name: str) -> JournalSummary:
    """Judge a Chaos Toolkit journal (https://chaostoolkit.org/reference/api/journal/) the gate's way.

    Beyond Chaos Toolkit's own status: a method probe must meet its tolerance or feed a declared
    measurement, a method action must report what it `affected`, every declared activity must have run,
    and each measurement needs a numeric output within its threshold (a missing value fails). Raises
    KeyError or ValueError for a malformed `immune-gate` measurement (no probe/threshold, unknown
    comparator, non-numeric threshold).
    """
    experiment = journal.get("experiment", {})
    before, before_probes = _steady(journal, "before")
    after, after_probes = _steady(journal, "after")
    run = list(journal.get("run") or [])
    specs = declared_measurements(experiment)
    method = _judge_method(run, _records(run, "method"), {str(spec.get("probe")) for spec in specs})
    rollbacks = _records(journal.get("rollbacks"), "rollback")
    problems: list[str] = []
    declared = [
        str(a.get("name", "?"))
        for a in experiment.get("method", []) or []
        if a.get("type") in ("action", "probe")
    ]
    ran = [a.name for a in method]
    if declared[: len(ran)] != ran or len(ran) < len(declared):
        missing = [n for n in declared if n not in ran]
        problems.append(
            f"method incomplete: {len(ran)} of {len(declared)} activities ran"
            + (f" (not run: {', '.join(missing)})" if missing else "")
        )
    measurements: list[Measurement] = []
    for spec in specs:
        probe = next((a for a in method if a.name == spec["probe"]), None)
        value = probe.output if probe and not probe.failed and isinstance(probe.output, int | float) else None
        comparator = str(spec.get("comparator", "<"))
        threshold = float(spec["threshold"])
        measurements.append(
            Measurement(
                name=f"{name}: {spec['name']}",
                value=None if value is None else float(value),
                threshold=threshold,
                comparator=comparator,
                unit=str(spec.get("unit", "")),
                passed=value is not None and _COMPARATORS[comparator](float(value), threshold),
            )
        )
    return JournalSummary(
        title=str(experiment.get("title", name)),
        status=str(journal.get("status", "unknown")),
        deviated=bool(journal.get("deviated", False)),
        steady_before=before,
        steady_after=after,
        activities=[*before_probes, *method, *after_probes, *rollbacks],
        measurements=measurements,
        start=journal.get("start"),
        end=journal.get("end"),
        duration_s=journal.get("duration"),
        problems=problems,
    )
