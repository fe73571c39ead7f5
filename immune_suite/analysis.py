"""Canary analysis: fixed SLOs plus a Kayenta-style comparison of canary against stable.

Both samples come from the same load window, so a slow machine or a noisy neighbour slows both
and does not fail the canary; only a canary that is slower *than stable* (a one-sided Mann-Whitney
U test, plus a minimum effect size) or outside the fixed SLOs fails.

No-data policy: a canary that received too little traffic fails ("no data is not a pass"), and so
does a window without a stable baseline (nothing to compare against is not evidence of health).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.stats import mannwhitneyu

from immune_suite.stack_config import ComparisonConfig, SloConfig
from immune_suite.verdict import Measurement, Status, Verdict

PERCENTILES = (50, 90, 95, 99)


class LatencySample(Protocol):
    @property
    def latency_ms(self) -> float: ...

    @property
    def ok(self) -> bool: ...


@dataclass(frozen=True)
class SampleSummary:
    count: int
    errors: int
    percentiles_ms: dict[str, float | None]

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "error_ratio": self.error_ratio,
            "percentiles_ms": self.percentiles_ms,
        }


def summarise(samples: Sequence[LatencySample]) -> SampleSummary:
    # Latency percentiles are over successful requests: a fast 500 must not make a canary look quick.
    latencies = np.array([s.latency_ms for s in samples if s.ok], dtype=float)
    errors = sum(1 for s in samples if not s.ok)
    percentiles: dict[str, float | None] = {
        f"p{p}": (float(np.percentile(latencies, p)) if latencies.size else None) for p in PERCENTILES
    }
    return SampleSummary(count=len(samples), errors=errors, percentiles_ms=percentiles)


@dataclass(frozen=True)
class Comparison:
    u_statistic: float | None
    p_value: float | None
    median_shift_ms: float | None
    median_ratio: float | None
    regressed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def compare_latency(
    canary: Sequence[LatencySample], stable: Sequence[LatencySample], config: ComparisonConfig
) -> Comparison:
    """One-sided Mann-Whitney U (is canary latency stochastically greater?) with an effect-size floor."""
    canary_ms = [s.latency_ms for s in canary if s.ok]
    stable_ms = [s.latency_ms for s in stable if s.ok]
    if len(canary_ms) < config.min_samples or len(stable_ms) < config.min_samples:
        return Comparison(None, None, None, None, True, "not enough successful samples to compare")
    result = mannwhitneyu(canary_ms, stable_ms, alternative="greater")
    p_value = float(result.pvalue)
    canary_median, stable_median = float(np.median(canary_ms)), float(np.median(stable_ms))
    shift = canary_median - stable_median
    ratio = canary_median / stable_median if stable_median > 0 else math.inf
    significant = p_value < config.alpha
    large = shift >= config.min_effect_ms and ratio > 1 + config.max_median_increase_ratio
    regressed = significant and large
    if regressed:
        reason = f"canary slower than stable: median +{shift:.1f} ms (x{ratio:.2f}), p={p_value:.2g}"
    elif significant:
        reason = f"statistically slower but below the effect floor (median +{shift:.1f} ms, x{ratio:.2f})"
    else:
        reason = f"no significant slowdown (p={p_value:.2g})"
    return Comparison(float(result.statistic), p_value, shift, ratio, regressed, reason)


def analyse_canary_step(
    step_percent: int,
    canary: Sequence[LatencySample],
    stable: Sequence[LatencySample],
    slo: SloConfig,
    comparison: ComparisonConfig,
) -> Verdict:
    """The verdict for one canary step; measurements carry every value and threshold for the record."""
    canary_summary, stable_summary = summarise(canary), summarise(stable)
    enough_canary = canary_summary.count >= comparison.min_samples
    enough_stable = stable_summary.count >= comparison.min_samples
    p95, p99 = canary_summary.percentiles_ms["p95"], canary_summary.percentiles_ms["p99"]
    error_ratio = canary_summary.error_ratio
    compared = compare_latency(canary, stable, comparison)

    def below(name: str, value: float | None, threshold: float, unit: str) -> Measurement:
        # A missing value (no successful canary request) fails the SLO rather than skipping it.
        return Measurement(name, value, threshold, "<", value is not None and value < threshold, unit, True)

    measurements = [
        Measurement(
            "canary_samples", canary_summary.count, comparison.min_samples, ">=", enough_canary, "req", True
        ),
        Measurement(
            "stable_samples", stable_summary.count, comparison.min_samples, ">=", enough_stable, "req"
        ),
        below("canary_p95_ms", p95, slo.p95_ms, "ms"),
        below("canary_p99_ms", p99, slo.p99_ms, "ms"),
        below("canary_error_ratio", error_ratio, slo.error_ratio, ""),
        Measurement(
            "mann_whitney_p_value",
            compared.p_value,
            comparison.alpha,
            "info",
            True,
            "",
        ),
        Measurement(
            "median_shift_ms",
            compared.median_shift_ms,
            comparison.min_effect_ms,
            "<",
            not compared.regressed,
            "ms",
        ),
        Measurement("stable_p95_ms", stable_summary.percentiles_ms["p95"], None, "info", True, "ms"),
        Measurement("stable_error_ratio", stable_summary.error_ratio, None, "info", True, ""),
    ]
    status = Verdict.status_from(measurements)
    failed = [m.name for m in measurements if not m.passed]
    if not enough_canary:
        summary = (
            f"{step_percent}%: NO DATA - canary got {canary_summary.count} requests"
            f" (< {comparison.min_samples}); no data is a failure"
        )
    elif failed:
        summary = f"{step_percent}%: failed {', '.join(failed)}; {compared.reason}"
    else:
        summary = f"{step_percent}%: canary within SLOs and not slower than stable ({compared.reason})"
    return Verdict(
        gate=f"canary-{step_percent}",
        status=status if status is not Status.WARN else Status.FAIL,
        summary=summary,
        measurements=measurements,
        details={
            "step_percent": step_percent,
            "canary": canary_summary.to_dict(),
            "stable": stable_summary.to_dict(),
            "comparison": compared.to_dict(),
            "no_data_policy": "a canary with fewer than min_samples requests fails",
        },
    )
