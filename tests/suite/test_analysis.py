"""Canary analysis: SLOs judged by exact tests, the comparisons with the reference, the no-data policy."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import binom, binomtest, norm

from immune_suite.analysis import (
    FAILING_TESTS,
    analyse_canary_step,
    compare_latency,
    look_alpha,
    samples_to_rule_out,
    summarise,
)
from immune_suite.stack_config import ComparisonConfig, SloConfig
from immune_suite.verdict import Measurement, Outcome, Status, Verdict
from tests.suite.support import FakeSample

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


# --- errors as counts, tails only with enough samples, three outcomes (issue 14 §3) ---------------


def outcome(verdict: Verdict, name: str) -> str:
    return str(verdict.details["outcomes"][name])


def with_errors(count: int, errors: int, seed: int, base_ms: float = 10) -> list[FakeSample]:
    """`count` requests, `errors` of them failed, spread evenly."""
    step = count / errors if errors else 0
    failed = {int(i * step) for i in range(errors)}
    return [
        FakeSample(base_ms + random.Random(seed * 100_000 + i).expovariate(1 / 4), i not in failed, float(i))
        for i in range(count)
    ]


def test_one_error_in_300_at_half_the_slo_passes() -> None:
    """A good candidate (error ratio 0.05 %) that happens to fail once in 300 requests: no evidence of
    a 0.1 % breach. The point estimate (0.33 %) failed it, at every step of most promotions."""
    verdict = analyse_canary_step(10, with_errors(300, 1, 1), with_errors(3000, 1, 2), SLO, COMPARISON)
    assert verdict.status is Status.PASS, verdict.summary
    assert verdict.outcome is Outcome.PASS
    assert measurement(verdict, "canary_error_ratio").value == 1 / 300


def test_equal_to_stable_passes() -> None:
    verdict = analyse_canary_step(50, with_errors(2000, 1, 3), with_errors(2000, 1, 4), SLO, COMPARISON)
    assert verdict.outcome is Outcome.PASS, verdict.summary


def test_five_percent_crashes_fail_at_the_first_step() -> None:
    verdict = analyse_canary_step(10, with_errors(150, 8, 5), with_errors(1350, 0, 6), SLO, COMPARISON)
    assert verdict.outcome is Outcome.FAIL
    assert outcome(verdict, "canary_error_ratio") == "fail"


def test_twice_the_error_slo_fails_with_enough_requests() -> None:
    verdict = analyse_canary_step(50, with_errors(20_000, 40, 7), with_errors(20_000, 2, 8), SLO, COMPARISON)
    assert verdict.outcome is Outcome.FAIL
    assert outcome(verdict, "canary_error_ratio") == "fail"


def test_more_errors_than_the_reference_fail_even_within_a_loose_slo() -> None:
    loose = SloConfig(error_ratio=0.05)
    verdict = analyse_canary_step(50, with_errors(3000, 30, 9), with_errors(3000, 0, 10), loose, COMPARISON)
    assert outcome(verdict, "canary_error_ratio") == "pass"
    assert outcome(verdict, "error_ratio_vs_stable") == "fail"
    assert verdict.outcome is Outcome.FAIL


def tail_slowed(count: int, share: float, extra_ms: float, seed: int) -> list[FakeSample]:
    rng = random.Random(seed)
    return [
        FakeSample(10 + rng.expovariate(1 / 4) + (extra_ms if rng.random() < share else 0), True, float(i))
        for i in range(count)
    ]


def test_150_ms_on_10_percent_of_requests_fails_with_enough_samples() -> None:
    """Median and SLOs unchanged (p95 ~ 165 ms < 200 ms): only the tail comparison sees it."""
    verdict = analyse_canary_step(10, tail_slowed(500, 0.10, 150, 11), samples(4500, 10, 12), SLO, COMPARISON)
    assert outcome(verdict, "canary_p95_ms") == "pass" and outcome(verdict, "median_shift_ms") == "pass"
    assert outcome(verdict, "p95_shift_ms") == "fail"
    assert verdict.outcome is Outcome.FAIL


def test_p99_of_too_few_requests_is_inconclusive_not_a_failure() -> None:
    """One slow request among 60: p99 of 60 is their maximum; not judged, neither pass nor fail."""
    canary = [*samples(59, 10, 13), FakeSample(900.0, True, 59.0)]
    verdict = analyse_canary_step(10, canary, samples(2000, 10, 14), SLO, COMPARISON)
    assert outcome(verdict, "canary_p99_ms") == "inconclusive"
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.status is Status.FAIL and not verdict.passed  # inconclusive is never a pass
    assert "INCONCLUSIVE" in verdict.summary
    assert verdict.details["needed_canary_samples"] >= COMPARISON.p99_min_samples


def test_zero_errors_in_too_few_requests_cannot_pass_on_errors() -> None:
    """40 clean requests cannot rule out a canary failing 5 % of them (0.95^40 = 13 %)."""
    verdict = analyse_canary_step(10, samples(40, 10, 15), samples(400, 10, 16), SLO, COMPARISON)
    assert outcome(verdict, "canary_error_ratio") == "pass"
    assert outcome(verdict, "canary_error_ratio_upper_bound") == "inconclusive"
    assert samples_to_rule_out(0, 0.05, 0.01) == 90  # log(0.01) / log(0.95) = 89.8
    assert verdict.details["needed_canary_samples"] >= 90


def test_tail_slo_fails_on_enough_slow_requests() -> None:
    """p95 judged by the exact quantile test: 40 of 200 requests over the SLO is a breach."""
    canary = samples(160, 10, 17) + [FakeSample(300.0, True, float(i)) for i in range(40)]
    verdict = analyse_canary_step(10, canary, samples(2000, 10, 18), SLO, COMPARISON)
    assert outcome(verdict, "canary_p95_ms") == "fail"


def test_the_fresh_baseline_names_the_reference() -> None:
    verdict = analyse_canary_step(
        10, samples(200, 10, 19), samples(200, 10, 20), SLO, COMPARISON, reference="baseline"
    )
    assert verdict.details["reference"] == "baseline"
    assert measurement(verdict, "baseline_samples").passed
    assert verdict.outcome is Outcome.PASS, verdict.summary


def test_look_alpha_spends_obrien_fleming_style() -> None:
    assert look_alpha(0.01, 1.0) == pytest.approx(0.005)
    levels = [look_alpha(0.01, t) for t in (0.1, 0.25, 0.5, 0.75, 1.0)]
    assert levels == sorted(levels) and levels[0] < 1e-10  # early looks need overwhelming evidence
    # the cumulative spending function alpha(t) = 2 * look level, alpha(1) = alpha (Lan & DeMets 1983)
    assert 2 * look_alpha(0.01, 0.5) == pytest.approx(2 * norm.sf(norm.isf(0.005) / 0.5**0.5))


def test_a_look_every_second_keeps_the_error_test_within_alpha() -> None:
    """Exact false-failure rate of the error-SLO test for a canary exactly AT the SLO, looked at 96
    times over a 480-request window (prod's first step): the probability that any look rejects,
    computed by dynamic programming over the error count, stays within the test's alpha.
    The old rule (alpha / 10 at every interim look) is shown to exceed it."""
    slo, n_total, looks = 0.001, 480, 96
    budget = COMPARISON.alpha / FAILING_TESTS

    def false_failure(level_at: Callable[[float], float]) -> float:
        alive = np.zeros(n_total + 1)
        alive[0] = 1.0  # P(count = k and no look rejected yet)
        rejected, seen = 0.0, 0
        for look in range(1, looks + 1):
            n = n_total * look // looks
            alive = np.convolve(alive, binom.pmf(np.arange(n - seen + 1), n - seen, slo))[: n_total + 1]
            seen = n
            level = level_at(look / looks)
            first_rejecting = next(
                (k for k in range(n + 1) if binomtest(k, n, slo, alternative="greater").pvalue < level), n + 1
            )
            rejected += alive[first_rejecting:].sum()
            alive[first_rejecting:] = 0.0
        return float(rejected)

    assert false_failure(lambda t: look_alpha(budget, t)) <= budget
    assert false_failure(lambda t: budget / 10 if t < 1 else budget) > budget


def test_inconclusive_survives_the_record_round_trip() -> None:
    canary = [*samples(59, 10, 13), FakeSample(900.0, True, 59.0)]
    verdict = analyse_canary_step(10, canary, samples(2000, 10, 14), SLO, COMPARISON)
    again = Verdict.from_dict(verdict.to_dict())
    assert again.outcome is Outcome.INCONCLUSIVE and again.status is Status.FAIL
    # verdicts of other gates say no outcome: theirs follows the status
    assert Verdict("load", Status.WARN, "advisory").outcome is Outcome.PASS
    assert Verdict("load", Status.FAIL, "broken").outcome is Outcome.FAIL
