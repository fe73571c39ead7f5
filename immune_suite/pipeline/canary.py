"""One canary step: shift a share of traffic, load it, and judge canary against stable.

While the load runs, the samples written so far are analysed once a second (an interim look).
When the canary already fails with enough evidence, traffic goes back to stable at once instead
of at the end of the window: users stop paying for a bad canary within about a second of the
evidence. Interim looks use a stricter significance level (alpha / 10) so that looking many
times does not inflate the false-failure rate; the final look uses the configured alpha.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from immune_suite.analysis import analyse_canary_step
from immune_suite.pipeline.gates import LoadResult
from immune_suite.progress import Progress
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Color
from immune_suite.verdict import Verdict

SAMPLES_FILE = "samples.jsonl"
# A tail percentile from a handful of requests is mostly noise (p95 of 20 samples is their maximum);
# an interim look acts on a percentile SLO only once it rests on this many canary requests.
PERCENTILE_MEASUREMENTS = frozenset({"canary_p95_ms", "canary_p99_ms"})
INTERIM_PERCENTILE_SAMPLES = 100  # what the load gate writes per response (colour, latency_ms, ok, at)


@dataclass(frozen=True)
class WindowSample:
    latency_ms: float
    ok: bool
    at: float


@dataclass
class CanaryResult:
    verdict: Verdict
    early_stop_at: float | None = None  # Unix time traffic went back to stable during the window
    first_breach_at: float | None = None  # first canary request outside what stable shows or the SLO
    interim_looks: int = 0
    details: dict[str, Any] = field(default_factory=dict)


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


def steady_part(by_color: dict[str, list[Any]], ramp_s: float) -> dict[str, list[Any]]:
    """Drop a load run's ramp-up: its first `ramp_s` seconds, counted from its first response.

    The ramp is excluded for both colours of a run alike; it matters at 100%, where the stable
    samples come from a second run whose ramp would otherwise meet the canary's full rate.
    """
    starts = [s.at for samples in by_color.values() for s in samples]
    if not starts:
        return by_color
    cut = min(starts) + ramp_s
    return {color: [s for s in samples if s.at >= cut] for color, samples in by_color.items()}


def same_window(canary: list[Any], stable: list[Any]) -> tuple[list[Any], list[Any]]:
    """Keep only the samples from the time both colours were being measured.

    At 100% the stable samples come from a second load run that starts a little later; a load spike
    on the machine before it started would otherwise count against the canary alone.
    """
    if not canary or not stable:
        return canary, stable
    start = max(min(s.at for s in canary), min(s.at for s in stable))
    end = min(max(s.at for s in canary), max(s.at for s in stable))
    return [s for s in canary if start <= s.at <= end], [s for s in stable if start <= s.at <= end]


def decisive_failures(look: Verdict, canary_count: int) -> list[str]:
    """The failed measurements of an interim look that are strong enough to act on now."""
    return [
        m.name
        for m in look.measurements
        if not m.passed
        and (m.name not in PERCENTILE_MEASUREMENTS or canary_count >= INTERIM_PERCENTILE_SAMPLES)
    ]


def first_breach(canary: list[Any], stable: list[Any], stack: StackConfig) -> float | None:
    """When the canary first did what stable does not: an error, or slower than stable p99 and the SLO."""
    stable_ok = sorted(s.latency_ms for s in stable if s.ok)
    ceiling = stack.slo.p95_ms
    if stable_ok:
        ceiling = min(ceiling, stable_ok[min(len(stable_ok) - 1, int(len(stable_ok) * 0.99))])
    times = [s.at for s in canary if not s.ok or s.latency_ms > max(ceiling, stack.comparison.min_effect_ms)]
    return min(times) if times else None


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
) -> CanaryResult:
    ingress_url, stable_url = urls
    strict = stack.comparison.model_copy(update={"alpha": stack.comparison.alpha / 10})
    early_stop_at: float | None = None
    interim: Verdict | None = None
    looks = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        main = pool.submit(load, ingress_url, out / "ingress")
        # At 100% stable gets no ingress traffic; a baseline load on the stable endpoint in the same
        # window keeps the comparison canary-versus-stable, Kayenta-style.
        baseline = pool.submit(load, stable_url, out / "baseline") if percent == 100 else None
        while not main.done():
            time.sleep(look_every_s)
            if early_stop_at is not None:
                continue
            window = steady_part(read_window(out / "ingress" / SAMPLES_FILE), ramp_s)
            if baseline is not None:
                window.setdefault(stable.value, []).extend(
                    steady_part(read_window(out / "baseline" / SAMPLES_FILE), ramp_s).get(stable.value, [])
                )
            canary_now, stable_now = same_window(
                window.get(candidate.value, []), window.get(stable.value, [])
            )
            # An interim look only acts on evidence: too little data so far is not yet "no data".
            if min(len(canary_now), len(stable_now)) < stack.comparison.min_samples:
                continue
            looks += 1
            look = analyse_canary_step(percent, canary_now, stable_now, stack.slo, strict)
            if decisive_failures(look, len(canary_now)):
                back_to_stable()
                early_stop_at = time.time()
                interim = look
                progress(
                    f"interim look {looks}: {look.summary}; traffic back on stable now",
                    stage=f"canary-{percent}",
                )
        ingress_run = main.result()
        baseline_run = baseline.result() if baseline else None

    ingress_steady = steady_part(ingress_run.samples, ramp_s)
    canary = list(ingress_steady.get(candidate.value, []))
    stable_samples = list(ingress_steady.get(stable.value, []))
    if baseline_run is not None:
        stable_samples += steady_part(baseline_run.samples, ramp_s).get(stable.value, [])
    canary, stable_samples = same_window(canary, stable_samples)
    final = analyse_canary_step(percent, canary, stable_samples, stack.slo, stack.comparison)
    # An early stop is final: the window after it no longer routed traffic to the canary.
    decided = interim if interim is not None else final
    details = {
        **decided.details,
        "decided_by": "interim look" if interim is not None else "full window",
        "interim_looks": looks,
        "full_window": final.details if interim is not None else None,
        "load_verdict": ingress_run.verdict.to_dict(),
        "baseline_load_verdict": baseline_run.verdict.to_dict() if baseline_run else None,
    }
    artifacts = list(ingress_run.verdict.artifacts) + (
        list(baseline_run.verdict.artifacts) if baseline_run else []
    )
    verdict = Verdict(
        gate=decided.gate,
        status=decided.status,
        summary=decided.summary + (" (stopped early)" if interim is not None else ""),
        measurements=decided.measurements,
        artifacts=artifacts,
        started_at=ingress_run.verdict.started_at,
        details=details,
    )
    breach = first_breach(canary, stable_samples, stack) if not verdict.passed else None
    return CanaryResult(verdict, early_stop_at, breach, looks, details)
