"""One canary step: shift a share of traffic, load it, and judge the canary against its reference.

The reference is the fresh baseline (samples coloured `baseline`: instances of the stable release
started with the canary, Kayenta-style) when the window has one, else stable. The first
`canary.warmup_s` seconds of canary and baseline samples of each window are not judged.

While the load runs, the samples written so far are analysed once a second (an interim look) at the
O'Brien-Fleming-type level of the share of the window seen so far (`analysis.look_alpha`), so that
looking every second keeps each test's false-failure rate within `alpha`. A look that FAILS moves
traffic back to stable at once: users stop paying for a bad canary within about a second of the
evidence. A look never passes early: the step runs its whole window.

At the end of the window the step is PASS, FAIL or INCONCLUSIVE. An inconclusive step is extended
(`canary.inconclusive.extend_times`, by as many further windows as the missing samples need at the
rate seen, at most `max_windows`); still inconclusive after that, it fails: rolled back.
`StepDecision` holds these decisions apart from HTTP, so `bench/canary_decisions.py` drives the very
same logic with simulated samples.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from immune_suite.analysis import SampleArrays, analyse_canary_step
from immune_suite.pipeline.gates import LoadResult
from immune_suite.progress import Progress
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Color
from immune_suite.verdict import Outcome, Status, Verdict

SAMPLES_FILE = "samples.jsonl"  # what the load gate writes per response (colour, latency_ms, ok, at)
BASELINE = "baseline"  # the colour key of fresh-baseline samples


@dataclass(frozen=True)
class WindowSample:
    latency_ms: float
    ok: bool
    at: float


@dataclass
class CanaryResult:
    verdict: Verdict
    early_stop_at: float | None = None  # Unix time traffic went back to stable during the window
    first_breach_at: float | None = None  # first canary error or request slower than the SLO / reference
    interim_looks: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    extension_windows: int = 0  # windows added because the step was inconclusive


def read_window(path: Path) -> dict[str, list[WindowSample]]:
    """Samples written so far (a last line still being written is skipped)."""
    by_color: dict[str, list[WindowSample]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return by_color
    for line in lines:
        try:
            row = json.loads(line)
            sample = WindowSample(float(row["latency_ms"]), bool(row["ok"]), float(row["at"]))
        except (ValueError, KeyError, TypeError):
            continue
        by_color.setdefault(str(row.get("color") or "unknown"), []).append(sample)
    return by_color


@dataclass(frozen=True)
class Columns(SampleArrays):
    """One colour's samples as columns: `latency_ms` (ms), `ok` (bool) and `at` (Unix s), same length.

    Interim looks redo the window's analysis every second on up to tens of thousands of requests;
    columns keep that (and the benchmark's thousands of simulated promotions) cheap.
    """

    at: np.ndarray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def of(cls, samples: Sequence[Any] | Columns) -> Columns:
        if isinstance(samples, Columns):
            return samples
        count = len(samples)
        return cls(
            np.fromiter((s.latency_ms for s in samples), dtype=float, count=count),
            np.fromiter((s.ok for s in samples), dtype=bool, count=count),
            np.fromiter((s.at for s in samples), dtype=float, count=count),
        )

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        parts = [p for p in parts if len(p)]
        if not parts:
            return EMPTY
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.latency_ms for p in parts]),
            np.concatenate([p.ok for p in parts]),
            np.concatenate([p.at for p in parts]),
        )

    def where(self, keep: np.ndarray) -> Columns:
        return Columns(self.latency_ms[keep], self.ok[keep], self.at[keep])

    def since(self, cut: float) -> Columns:
        return self.where(self.at >= cut)


EMPTY = Columns(np.empty(0), np.empty(0, dtype=bool), np.empty(0))
Window = dict[str, Columns]  # colour -> samples


def columns(by_color: Mapping[str, Sequence[Any] | Columns]) -> Window:
    return {color: Columns.of(samples) for color, samples in by_color.items()}


def steady_part(by_color: Mapping[str, Sequence[Any] | Columns], ramp_s: float) -> Window:
    """Drop a load run's ramp-up: its first `ramp_s` seconds, counted from its first response.

    The ramp is excluded for both colours of a run alike; it matters at 100%, where the stable
    samples come from a second run whose ramp would otherwise meet the canary's full rate.
    """
    window = columns(by_color)
    starts = [float(c.at.min()) for c in window.values() if len(c)]
    if not starts:
        return window
    cut = min(starts) + ramp_s
    return {color: c.since(cut) for color, c in window.items()}


def same_window(canary: Sequence[Any] | Columns, stable: Sequence[Any] | Columns) -> tuple[Columns, Columns]:
    """Keep only the samples from the time both colours were being measured.

    At 100% the stable samples come from a second load run that starts a little later; a load spike
    on the machine before it started would otherwise count against the canary alone.
    """
    canary, stable = Columns.of(canary), Columns.of(stable)
    if not len(canary) or not len(stable):
        return canary, stable
    start = max(canary.at.min(), stable.at.min())
    end = min(canary.at.max(), stable.at.max())
    return (
        canary.where((canary.at >= start) & (canary.at <= end)),
        stable.where((stable.at >= start) & (stable.at <= end)),
    )


def warm_part(samples: Sequence[Any] | Columns, warmup_s: float) -> Columns:
    """Drop a freshly started colour's first `warmup_s` seconds, counted from its first sample."""
    data = Columns.of(samples)
    if warmup_s <= 0 or not len(data):
        return data
    return data.since(float(data.at.min()) + warmup_s)


def prepare_run(
    by_color: Mapping[str, Sequence[Any] | Columns], ramp_s: float, warmup_s: float, candidate: str
) -> Window:
    """One load run's judged samples: its ramp-up dropped, then the canary's and baseline's warm-up."""
    steady = steady_part(by_color, ramp_s)
    return {
        color: warm_part(c, warmup_s) if color in (candidate, BASELINE) else c for color, c in steady.items()
    }


def merge(runs: Sequence[Window]) -> Window:
    colors = {color for run in runs for color in run}
    return {color: Columns.concat([run[color] for run in runs if color in run]) for color in colors}


def pair(window: Window, candidate: str, stable: str) -> tuple[Columns, Columns, str]:
    """Canary samples, reference samples (fresh baseline if any, else stable) and the reference's name."""
    baseline = window.get(BASELINE, EMPTY)
    reference, name = (baseline, BASELINE) if len(baseline) else (window.get(stable, EMPTY), "stable")
    canary, reference = same_window(window.get(candidate, EMPTY), reference)
    return canary, reference, name


def decisive_failures(look: Verdict) -> list[str]:
    """The measurements an interim look FAILED (not merely inconclusive): enough to act on now."""
    outcomes: dict[str, str] = look.details.get("outcomes", {})
    return [name for name, outcome in outcomes.items() if outcome == Outcome.FAIL.value]


class StepDecision:
    """The decisions of one canary step, apart from how its samples arrive (HTTP load or simulation).

    Use: for each window of the current phase, `look(partial)` as samples arrive (returns the FAILED
    look that must stop the step at once, else None), then `window_done(samples)`; at the end of the
    phase `phase_done()` returns the phase's final verdict and how many windows to extend by (0: the
    step is decided). Every argument is a prepared run (`prepare_run`): colour -> samples with `at`.
    """

    def __init__(self, percent: int, candidate: str, stable: str, stack: StackConfig, steady_s: float):
        self.percent, self.candidate, self.stable, self.stack = percent, candidate, stable, stack
        self.steady_s = max(steady_s, 1e-3)  # the judged span of one window, s
        self.done: list[Window] = []
        self.extensions = 0  # extension phases started
        self.phase_windows, self.phase_index = 1, 0  # windows planned in this phase, finished so far
        self.looks = 0
        self.stopped_by: Verdict | None = None

    def _information(self, partial: Window) -> float:
        # The information fraction of Lan & DeMets: samples so far / samples planned for the phase.
        # Requests arrive at a steady rate, so the share of the planned measuring time elapsed is
        # that fraction without having to know the rate in advance.
        times = partial.get(self.candidate, EMPTY).at
        in_window = min(1.0, float(times.max() - times.min()) / self.steady_s) if times.size else 0.0
        return (self.phase_index + in_window) / self.phase_windows

    def _analyse(self, window: Window, information: float) -> tuple[Verdict, int]:
        canary, reference, name = pair(window, self.candidate, self.stable)
        verdict = analyse_canary_step(
            self.percent,
            canary,
            reference,
            self.stack.slo,
            self.stack.comparison,
            information=information,
            reference=name,
        )
        return verdict, len(canary)

    def look(self, partial: Window) -> Verdict | None:
        window = merge([*self.done, partial])
        canary, reference, _ = pair(window, self.candidate, self.stable)
        # An interim look only acts on evidence: too little data so far is not yet "no data".
        if min(len(canary), len(reference)) < self.stack.comparison.min_samples:
            return None
        self.looks += 1
        look, _ = self._analyse(window, self._information(partial))
        if look.outcome is Outcome.FAIL:
            self.stopped_by = look
            return look
        return None

    def window_done(self, run: Window) -> None:
        self.done.append(run)
        self.phase_index += 1

    def samples(self) -> tuple[Columns, Columns, str]:
        return pair(merge(self.done), self.candidate, self.stable)

    def phase_done(self) -> tuple[Verdict, int]:
        final, have = self._analyse(merge(self.done), 1.0)
        if final.outcome is not Outcome.INCONCLUSIVE or self.stopped_by is not None:
            return final, 0
        if self.extensions >= self.stack.canary.inconclusive.extend_times:
            return final, 0
        per_window = max(1.0, have / max(len(self.done), 1))
        need = int(final.details.get("needed_canary_samples", 0))
        # Arrivals vary: plan for the need plus two standard deviations of a Poisson count, so that
        # the extension is not itself inconclusive by a handful of requests.
        missing = max(0.0, need + 2 * math.sqrt(need) - have)
        windows = min(max(1, math.ceil(missing / per_window)), self.stack.canary.inconclusive.max_windows)
        self.extensions += 1
        self.phase_windows, self.phase_index = windows, 0
        return final, windows


def step_verdict(final: Verdict, decision: StepDecision, extension_windows: int) -> Verdict:
    """The step's verdict: the stopping look, else the last final look; inconclusive is a rollback."""
    decided = decision.stopped_by or final
    summary = decided.summary
    if decision.stopped_by is not None:
        summary += " (stopped early)"
    elif decided.outcome is Outcome.INCONCLUSIVE:
        summary += (
            f"; still inconclusive after {extension_windows} extension window(s):"
            f" {decision.stack.canary.inconclusive.then}"
        )
    elif extension_windows:
        summary += f" (after {extension_windows} extension window(s))"
    return Verdict(
        gate=decided.gate,
        status=Status.PASS if decided.outcome is Outcome.PASS else Status.FAIL,
        summary=summary,
        measurements=decided.measurements,
        details={**decided.details, "extension_windows": extension_windows},
    )


def breach_threshold_ms(reference: Sequence[Any] | Columns, stack: StackConfig) -> float:
    """Latency (ms) above which a canary request counts as a breach: the SLO p95, or the reference's
    p99 when that is lower (floored at `comparison.min_effect_ms`, as loopback p99s of a few ms would
    flag noise). Never above the SLO p95: a reference slower than the SLO (a loaded machine) must not
    hide canary requests that break it."""
    reference_ok = np.sort(Columns.of(reference).ok_latency_ms)
    ceiling = stack.slo.p95_ms
    if reference_ok.size:
        p99 = float(reference_ok[min(reference_ok.size - 1, int(reference_ok.size * 0.99))])
        ceiling = min(ceiling, max(p99, stack.comparison.min_effect_ms))
    return ceiling


def first_breach(
    canary: Sequence[Any] | Columns, reference: Sequence[Any] | Columns, stack: StackConfig
) -> float | None:
    """Unix time (s) of the first canary request that was an error or slower than `breach_threshold_ms`.

    Pass every canary request of the step (warm-up included: users got those answers too). None
    only when no canary request failed or was that slow, i.e. the step failed on a comparison of
    distributions alone.
    """
    canary = Columns.of(canary)
    bad = ~canary.ok | (canary.latency_ms > breach_threshold_ms(reference, stack))
    return float(canary.at[bad].min()) if bad.any() else None


def run_canary_step(
    percent: int,
    candidate: Color,
    stable: Color,
    stack: StackConfig,
    load: Callable[[str, Path], LoadResult],
    urls: tuple[str, str],  # ingress, stable
    out: Path,
    back_to_stable: Callable[[], None],
    progress: Progress,
    look_every_s: float = 1.0,
    ramp_s: float = 0.0,
    *,
    duration_s: float | None = None,  # one window's length; default `stack.canary.step_duration_s`
) -> CanaryResult:
    """Run one step's windows (the step, then any extension) with interim looks; the step's verdict.

    `load(url, directory)` runs one window of load and writes `directory/samples.jsonl` as it goes.
    The verdict passes only on a PASS outcome; FAIL and a still-inconclusive step fail it (details:
    `outcome`, `decided_by`, `extension_windows`, every window's load verdict).
    """
    ingress_url, stable_url = urls
    duration = stack.canary.step_duration_s if duration_s is None else duration_s
    warmup = stack.canary.warmup_s
    decision = StepDecision(
        percent, candidate.value, stable.value, stack, max(duration - ramp_s - warmup, look_every_s)
    )
    early_stop_at: float | None = None
    load_runs: list[LoadResult] = []

    def prepared(path: Path) -> Window:
        return prepare_run(read_window(path), ramp_s, warmup, candidate.value)

    def one_window(directory: Path) -> None:
        nonlocal early_stop_at
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            main = pool.submit(load, ingress_url, directory / "ingress")
            # At 100% stable gets no ingress traffic; a load on the stable endpoint in the same
            # window keeps a stable reference, Kayenta-style (a fresh baseline, if any, wins).
            side = pool.submit(load, stable_url, directory / "baseline") if percent == 100 else None
            while not main.done():
                time.sleep(look_every_s)
                if early_stop_at is not None:
                    continue
                partial = merge(
                    [prepared(directory / "ingress" / SAMPLES_FILE)]
                    + ([prepared(directory / "baseline" / SAMPLES_FILE)] if side is not None else [])
                )
                look = decision.look(partial)
                if look is not None:
                    back_to_stable()
                    early_stop_at = time.time()
                    progress(
                        f"interim look {decision.looks}: {look.summary}; traffic back on stable now",
                        stage=f"canary-{percent}",
                    )
            runs = [main.result()] + ([side.result()] if side is not None else [])
        load_runs.extend(runs)
        decision.window_done(merge([prepare_run(r.samples, ramp_s, warmup, candidate.value) for r in runs]))

    one_window(out)
    final, extend = decision.phase_done()
    extension_windows = 0
    while extend and early_stop_at is None:
        progress(
            f"{final.summary}; extending the step by {extend} window(s) of {duration:g} s",
            stage=f"canary-{percent}",
        )
        for _ in range(extend):
            extension_windows += 1
            one_window(out / f"extension-{extension_windows}")
            if early_stop_at is not None:
                break
        final, extend = decision.phase_done()

    verdict = step_verdict(final, decision, extension_windows)
    details = {
        **verdict.details,
        "decided_by": "interim look" if decision.stopped_by is not None else "full window",
        "interim_looks": decision.looks,
        "full_window": final.details if decision.stopped_by is not None else None,
        "load_verdict": load_runs[0].verdict.to_dict() if load_runs else None,
        "load_verdicts": [r.verdict.to_dict() for r in load_runs],
    }
    verdict = Verdict(
        gate=verdict.gate,
        status=verdict.status,
        summary=verdict.summary,
        measurements=verdict.measurements,
        artifacts=[a for r in load_runs for a in r.verdict.artifacts],
        started_at=load_runs[0].verdict.started_at if load_runs else verdict.started_at,
        details=details,
    )
    _, reference, _ = decision.samples()
    # Every canary request the step sent, not only the judged ones: a failure in the warm-up or
    # outside the colours' common span still reached a user.
    every_canary = Columns.concat([Columns.of(r.samples.get(candidate.value, [])) for r in load_runs])
    breach = first_breach(every_canary, reference, stack) if not verdict.passed else None
    return CanaryResult(verdict, early_stop_at, breach, decision.looks, details, extension_windows)
