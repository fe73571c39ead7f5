"""Canary analysis: fixed SLOs, the Mann-Whitney comparison, and the no-data policy."""

from __future__ import annotations

import random

from immune_suite.analysis import analyse_canary_step, compare_latency, summarise
from immune_suite.stack_config import ComparisonConfig, SloConfig
from immune_suite.verdict import Measurement, Status, Verdict
from tests.suite.conftest import FakeSample

SLO = SloConfig()
COMPARISON = ComparisonConfig()


def samples(count: int, base_ms: float, seed: int, error_every: int = 0) -> list[FakeSample]:
    rng = random.Random(seed)
    return [
        FakeSample(base_ms + rng.expovariate(1 / 4), not (error_every and i % error_every == 0), float(i))
        for i in range(count)
    ]


def measurement(verdict: Verdict, name: str) -> Measurement:
    return next(m for m in verdict.measurements if m.name == name)


def test_same_distribution_passes() -> None:
    verdict = analyse_canary_step(10, samples(100, 10, 1), samples(900, 10, 2), SLO, COMPARISON)
    assert verdict.status is Status.PASS, verdict.summary
    assert verdict.gate == "canary-10"
    assert measurement(verdict, "mann_whitney_p_value").value is not None


def test_latency_regression_breaks_slo_and_comparison() -> None:
    verdict = analyse_canary_step(10, samples(100, 400, 1), samples(900, 10, 2), SLO, COMPARISON)
    assert verdict.status is Status.FAIL
    assert not measurement(verdict, "canary_p95_ms").passed
    assert not measurement(verdict, "median_shift_ms").passed
    assert verdict.details["comparison"]["regressed"] is True


def test_slower_than_stable_within_slo_still_fails() -> None:
    # 60 ms is inside the fixed SLOs, but against a 10 ms stable from the same window it is a regression.
    verdict = analyse_canary_step(50, samples(300, 60, 1), samples(300, 10, 2), SLO, COMPARISON)
    assert measurement(verdict, "canary_p95_ms").passed
    assert not measurement(verdict, "median_shift_ms").passed
    assert verdict.status is Status.FAIL


def test_tiny_significant_difference_is_below_effect_floor() -> None:
    comparison = compare_latency(samples(2000, 3, 1), samples(2000, 2, 2), COMPARISON)
    assert comparison.p_value is not None and comparison.p_value < COMPARISON.alpha
    assert not comparison.regressed


def test_no_canary_traffic_fails() -> None:
    verdict = analyse_canary_step(10, [], samples(900, 10, 2), SLO, COMPARISON)
    assert verdict.status is Status.FAIL
    assert "NO DATA" in verdict.summary
    assert not measurement(verdict, "canary_samples").passed


def test_too_few_canary_samples_fail() -> None:
    verdict = analyse_canary_step(
        10, samples(COMPARISON.min_samples - 1, 10, 1), samples(900, 10, 2), SLO, COMPARISON
    )
    assert verdict.status is Status.FAIL


def test_no_stable_baseline_fails() -> None:
    verdict = analyse_canary_step(100, samples(500, 10, 1), [], SLO, COMPARISON)
    assert verdict.status is Status.FAIL
    assert not measurement(verdict, "stable_samples").passed


def test_error_ratio_over_slo_fails() -> None:
    verdict = analyse_canary_step(
        10, samples(200, 10, 1, error_every=50), samples(900, 10, 2), SLO, COMPARISON
    )
    assert measurement(verdict, "canary_error_ratio").value == 4 / 200
    assert verdict.status is Status.FAIL


def test_all_canary_requests_failing_fails_latency_slo_too() -> None:
    failing = [FakeSample(1.0, False, float(i)) for i in range(100)]
    verdict = analyse_canary_step(10, failing, samples(900, 10, 2), SLO, COMPARISON)
    assert measurement(verdict, "canary_p95_ms").value is None
    assert not measurement(verdict, "canary_p95_ms").passed


def test_summary_percentiles_ignore_failed_requests() -> None:
    summary = summarise([FakeSample(1000, False, 0), FakeSample(5, True, 1), FakeSample(5, True, 2)])
    assert summary.percentiles_ms["p99"] == 5
    assert summary.errors == 1 and summary.count == 3
