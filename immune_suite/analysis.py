"""Canary analysis: SLOs judged with exact tests, and a Kayenta-style comparison with a reference.

The reference is the fresh baseline (instances of the stable release started with the canary, the
samples' colour `baseline`) when there is one, else stable; both come from the same load window, so
a slow machine slows both and does not fail the canary.

Every judgement has three outcomes (`immune_suite.verdict.Outcome`):

- FAIL: the evidence says the canary breaks an SLO or is worse than the reference, at the look's
  significance level;
- PASS: no such evidence, *and* enough requests that the test could have seen a failure;
- INCONCLUSIVE: neither (too few requests to judge a tail percentile, or to rule out a grossly
  failing canary). The step runner (`pipeline/canary.py`) extends an inconclusive step, then rolls it
  back.

Tests (one-sided; `comparison.alpha` is the step's false-failure budget, split evenly among the six
tests that can fail it (Bonferroni) and spent over the window's looks, see `look_alpha`):

- errors against the SLO: exact binomial test of H0 "error ratio <= slo.error_ratio" (errors are
  counts, never a point estimate: one error among 300 requests is not evidence of a 0.1 % breach);
- errors, enough evidence to pass: Clopper-Pearson upper bound (confidence 1 - error_beta) below
  `error_detect_ratio` (Clopper & Pearson 1934, Biometrika 26(4):404-413);
- errors against the reference: the exact conditional test for the ratio of two Poisson rates with a
  margin (H0 "canary rate <= margin x reference rate"; given the total count, the canary's share is
  binomial: Przyborowski & Wilenski 1940, Biometrika 31:313-323; Gu, Ng, Tang & Schucany 2008,
  Biometrical Journal 50(2):283-298);
- p95/p99 against the SLO: the exact quantile (sign) test on the number of successful requests
  slower than the SLO (H0 "at most 5 % / 1 % are slower"; Conover, Practical Nonparametric
  Statistics, 3rd ed., §3.2), only with `p95_min_samples` / `p99_min_samples` successful requests;
- tail against the reference: Mood's median test generalised to the pooled p95 (the counts above
  it form a 2x2 table judged by Fisher's exact test; Mood 1950, Introduction to the Theory of
  Statistics, §16.7) plus an effect floor on the p95 shift;
- median against the reference: one-sided Mann-Whitney U plus an effect floor.

No-data policy: fewer than `min_samples` canary or reference requests at the end of a window fails
("no data is not a pass"; nothing to compare against is not evidence of health either).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.special import betaincinv, ndtr, ndtri
from scipy.stats import binomtest, fisher_exact, mannwhitneyu

from immune_suite.stack_config import ComparisonConfig, SloConfig
from immune_suite.verdict import Measurement, Outcome, Status, Verdict

PERCENTILES = (50, 90, 95, 99)
TAIL_COMPARISON_QUANTILE = 95
# The tests that can fail a step: errors vs SLO, errors vs reference, p95 SLO, p99 SLO, tail vs
# reference, median vs reference. `comparison.alpha` is split among them (Bonferroni).
FAILING_TESTS = 6


class LatencySample(Protocol):
    @property
    def latency_ms(self) -> float: ...

    @property
    def ok(self) -> bool: ...


@dataclass(frozen=True)
class SampleArrays:
    """Samples as arrays: `latency_ms` (float, ms) and `ok` (bool), one entry per request, same length."""

    latency_ms: np.ndarray
    ok: np.ndarray

    def __len__(self) -> int:
        return int(self.ok.size)

    @property
    def errors(self) -> int:
        return int(self.ok.size - np.count_nonzero(self.ok))

    @property
    def ok_latency_ms(self) -> np.ndarray:
        selected: np.ndarray = self.latency_ms[self.ok]
        return selected


def as_arrays(samples: Sequence[LatencySample] | SampleArrays) -> SampleArrays:
    if isinstance(samples, SampleArrays):
        return samples
    latency = np.fromiter((s.latency_ms for s in samples), dtype=float, count=len(samples))
    ok = np.fromiter((s.ok for s in samples), dtype=bool, count=len(samples))
    return SampleArrays(latency, ok)


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


def summarise(samples: Sequence[LatencySample] | SampleArrays) -> SampleSummary:
    # Latency percentiles are over successful requests: a fast 500 must not make a canary look quick.
    arrays = as_arrays(samples)
    latencies = arrays.ok_latency_ms
    values = np.percentile(latencies, PERCENTILES) if latencies.size else [None] * len(PERCENTILES)
    percentiles = {
        f"p{p}": (float(v) if v is not None else None) for p, v in zip(PERCENTILES, values, strict=True)
    }
    return SampleSummary(count=len(arrays), errors=arrays.errors, percentiles_ms=percentiles)


def look_alpha(alpha: float, information: float) -> float:
    """The one-sided nominal level of a look at `information` (0 < t <= 1) of a window's samples.

    Lan & DeMets (1983), "Discrete sequential boundaries for clinical trials", Biometrika
    70(3):659-663, O'Brien-Fleming-type spending alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)). That
    function is exactly the probability that a Brownian motion crosses the constant boundary
    z_{1-alpha/2} by time t (reflection principle), so rejecting whenever Z(t) >= z_{1-alpha/2}/sqrt(t)
    keeps the type-I error of the whole window <= alpha for ANY number and timing of looks, even a
    look every second (Jennison & Turnbull 2000, Group Sequential Methods, ch. 7). The price: the
    final look (t = 1) tests at alpha / 2, and early looks only act on overwhelming evidence.
    """
    t = min(max(information, 1e-9), 1.0)
    z = float(ndtri(1 - alpha / 2))  # scipy.special: the normal quantile, without scipy.stats' overhead
    return float(ndtr(-z / math.sqrt(t)))


def error_upper_bound(errors: int, count: int, beta: float) -> float:
    """One-sided Clopper-Pearson upper confidence bound (confidence 1 - beta) of an error ratio.

    The bound is the (1 - beta) quantile of Beta(errors + 1, count - errors) (Clopper & Pearson 1934).
    """
    if count <= 0 or errors >= count:
        return 1.0
    return float(betaincinv(errors + 1, count - errors, 1 - beta))


def samples_to_rule_out(errors: int, detect_ratio: float, beta: float, have: int = 0) -> int:
    """Fewest requests (with `errors` errors among them) whose upper bound falls below `detect_ratio`."""
    low = high = max(have, errors + 1, 1)
    while error_upper_bound(errors, high, beta) >= detect_ratio:
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        if error_upper_bound(errors, middle, beta) < detect_ratio:
            high = middle
        else:
            low = middle + 1
    return high


def error_rate_ratio_p_value(
    canary_errors: int, canary_count: int, reference_errors: int, reference_count: int, margin: float
) -> float:
    """P-value of H0 "canary error rate <= margin x reference rate" (exact conditional test).

    Given the total number of errors K, the canary's errors are Binomial(K, pi) with
    pi = margin n_c / (margin n_c + n_r) at the H0 boundary (Przyborowski & Wilenski 1940).
    """
    total = canary_errors + reference_errors
    if canary_errors == 0 or reference_count <= 0 or canary_count <= 0:
        return 1.0
    share = margin * canary_count / (margin * canary_count + reference_count)
    return float(binomtest(canary_errors, total, share, alternative="greater").pvalue)


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
    canary: Sequence[LatencySample] | SampleArrays,
    stable: Sequence[LatencySample] | SampleArrays,
    config: ComparisonConfig,
    alpha: float | None = None,
    test_below_floor: bool = True,
    medians: tuple[float, float] | None = None,  # already computed (canary, stable), ms
) -> Comparison:
    """One-sided Mann-Whitney U (is canary latency stochastically greater?) with an effect-size floor.

    `alpha` is the look's nominal level (default `config.alpha`). With `test_below_floor` false the
    test is skipped (p-value None) when the medians are within the effect floor: the decision cannot
    depend on it then (interim looks, which run every second, save the work).
    """
    level = config.alpha if alpha is None else alpha
    canary_ms = as_arrays(canary).ok_latency_ms
    stable_ms = as_arrays(stable).ok_latency_ms
    if canary_ms.size < config.min_samples or stable_ms.size < config.min_samples:
        return Comparison(None, None, None, None, True, "not enough successful samples to compare")
    if medians is None:
        medians = (float(np.median(canary_ms)), float(np.median(stable_ms)))
    canary_median, stable_median = medians
    shift = canary_median - stable_median
    ratio = canary_median / stable_median if stable_median > 0 else math.inf
    large = shift >= config.min_effect_ms and ratio > 1 + config.max_median_increase_ratio
    if not large and not test_below_floor:
        reason = f"median +{shift:.1f} ms (x{ratio:.2f}) within the effect floor (not tested at this look)"
        return Comparison(None, None, shift, ratio, False, reason)
    result = mannwhitneyu(canary_ms, stable_ms, alternative="greater")
    p_value = float(result.pvalue)
    significant = p_value < level
    regressed = significant and large
    if regressed:
        reason = f"canary slower than reference: median +{shift:.1f} ms (x{ratio:.2f}), p={p_value:.2g}"
    elif significant:
        reason = f"statistically slower but below the effect floor (median +{shift:.1f} ms, x{ratio:.2f})"
    else:
        reason = f"no significant slowdown (p={p_value:.2g})"
    return Comparison(float(result.statistic), p_value, shift, ratio, regressed, reason)


@dataclass(frozen=True)
class Judged:
    """One measurement with its three-way outcome and the test behind it (for the record)."""

    measurement: Measurement
    outcome: Outcome
    p_value: float | None = None
    note: str = ""


def _judged(
    name: str,
    value: float | None,
    threshold: float | None,
    comparator: str,
    outcome: Outcome,
    unit: str = "",
    p_value: float | None = None,
    note: str = "",
    abort: bool = False,
) -> Judged:
    measurement = Measurement(name, value, threshold, comparator, outcome is Outcome.PASS, unit, abort)
    return Judged(measurement, outcome, p_value, note)


def _info(name: str, value: float | None, unit: str = "") -> Judged:
    return Judged(Measurement(name, value, None, "info", True, unit), Outcome.PASS)


def _tail_slo(
    quantile: int,
    ok_ms: np.ndarray,
    estimate: float | None,
    threshold_ms: float,
    min_samples: int,
    level: float,
) -> Judged:
    """Exact quantile test: are more than (100 - quantile) % of successful requests slower than the SLO?

    `estimate` is the sample percentile, reported (never judged: with 40 requests p95 is their max).
    """
    name = f"canary_p{quantile}_ms"
    if ok_ms.size < min_samples:
        return _judged(
            name,
            estimate,
            threshold_ms,
            "<",
            Outcome.INCONCLUSIVE,
            "ms",
            note=f"{ok_ms.size} successful requests < {min_samples} needed to judge p{quantile}",
        )
    slower = int(np.count_nonzero(ok_ms > threshold_ms))
    p_value = float(binomtest(slower, int(ok_ms.size), 1 - quantile / 100, alternative="greater").pvalue)
    outcome = Outcome.FAIL if p_value < level else Outcome.PASS
    note = f"{slower}/{ok_ms.size} slower than {threshold_ms:g} ms"
    return _judged(name, estimate, threshold_ms, "<", outcome, "ms", p_value, note)


def _tail_comparison(
    canary_ms: np.ndarray,
    reference_ms: np.ndarray,
    config: ComparisonConfig,
    level: float,
    test_below_floor: bool = True,
    p95s: tuple[float, float] | None = None,  # already computed (canary, reference), ms
) -> Judged:
    """Mood's quantile test at the pooled p95 (Fisher's exact, one-sided) plus the p95 effect floor."""
    name = f"p{TAIL_COMPARISON_QUANTILE}_shift_ms"
    need = config.p95_min_samples
    if canary_ms.size < need or reference_ms.size < need:
        return _judged(
            name,
            None,
            config.min_effect_ms,
            "<",
            Outcome.INCONCLUSIVE,
            "ms",
            note=f"tail comparison needs {need} successful requests on each side",
        )
    if p95s is None:
        p95s = (
            float(np.percentile(canary_ms, TAIL_COMPARISON_QUANTILE)),
            float(np.percentile(reference_ms, TAIL_COMPARISON_QUANTILE)),
        )
    canary_p, reference_p = p95s
    shift = canary_p - reference_p
    ratio = canary_p / reference_p if reference_p > 0 else math.inf
    large = shift >= config.min_effect_ms and ratio > 1 + config.max_median_increase_ratio
    note = f"p95 {canary_p:.1f} ms vs {reference_p:.1f} ms"
    if not large and not test_below_floor:
        return _judged(name, shift, config.min_effect_ms, "<", Outcome.PASS, "ms", None, note)
    pooled = float(np.percentile(np.concatenate([canary_ms, reference_ms]), TAIL_COMPARISON_QUANTILE))
    above_c = int(np.count_nonzero(canary_ms > pooled))
    above_r = int(np.count_nonzero(reference_ms > pooled))
    table = [[above_c, int(canary_ms.size) - above_c], [above_r, int(reference_ms.size) - above_r]]
    p_value = float(fisher_exact(table, alternative="greater").pvalue)
    outcome = Outcome.FAIL if p_value < level and large else Outcome.PASS
    note += f"; {above_c}/{canary_ms.size} above the pooled p95"
    return _judged(name, shift, config.min_effect_ms, "<", outcome, "ms", p_value, note)


def _pair_of(canary: SampleSummary, reference: SampleSummary, key: str) -> tuple[float, float] | None:
    first, second = canary.percentiles_ms[key], reference.percentiles_ms[key]
    return None if first is None or second is None else (first, second)


def analyse_canary_step(
    step_percent: int,
    canary: Sequence[LatencySample] | SampleArrays,
    stable: Sequence[LatencySample] | SampleArrays,
    slo: SloConfig,
    comparison: ComparisonConfig,
    *,
    information: float = 1.0,
    reference: str = "stable",
) -> Verdict:
    """One look at a canary step: every measurement judged pass / fail / inconclusive.

    `canary` and `stable` are the canary's and the reference's samples (the fresh baseline's when
    `reference == "baseline"`), latency in ms. `information` is the share of the window's samples
    seen so far (1.0 at the end of a window); each test runs at `look_alpha(alpha, information)`.
    The verdict's status is PASS only when every measurement passed; an inconclusive look has status
    FAIL and `details["outcome"] == "inconclusive"`. Measurements carry every value and threshold.
    """
    canary_arrays, reference_arrays = as_arrays(canary), as_arrays(stable)
    canary_summary, reference_summary = summarise(canary_arrays), summarise(reference_arrays)
    # alpha is the step's whole false-failure budget: shared among the tests that can fail it
    # (Bonferroni), each spent over the window's looks (look_alpha).
    level = look_alpha(comparison.alpha / FAILING_TESTS, information)
    final_look = information >= 1.0  # interim looks skip tests that cannot change their decision
    n_c, n_r = len(canary_arrays), len(reference_arrays)
    k_c, k_r = canary_arrays.errors, reference_arrays.errors
    canary_ok, reference_ok = canary_arrays.ok_latency_ms, reference_arrays.ok_latency_ms
    enough_canary, enough_reference = n_c >= comparison.min_samples, n_r >= comparison.min_samples
    judged: list[Judged] = [
        _judged(
            "canary_samples",
            n_c,
            comparison.min_samples,
            ">=",
            Outcome.PASS if enough_canary else Outcome.FAIL,
            "req",
            abort=True,
        ),
        _judged(
            f"{reference}_samples",
            n_r,
            comparison.min_samples,
            ">=",
            Outcome.PASS if enough_reference else Outcome.FAIL,
            "req",
        ),
    ]
    if n_c:
        slo_p = float(binomtest(k_c, n_c, slo.error_ratio, alternative="greater").pvalue)
        upper = error_upper_bound(k_c, n_c, comparison.error_beta)
        ruled_out = upper < comparison.error_detect_ratio
        detect, beta = comparison.error_detect_ratio, comparison.error_beta
        bound_note = f"Clopper-Pearson {1 - beta:.0%} upper bound {upper:.3g}" + (
            ""
            if ruled_out
            else f"; {samples_to_rule_out(k_c, detect, beta, n_c)} requests needed to rule out a canary"
            f" failing {detect:.0%} of them"
        )
        judged += [
            _judged(
                "canary_error_ratio",
                k_c / n_c,
                slo.error_ratio,
                "<=",
                Outcome.FAIL if slo_p < level else Outcome.PASS,
                "",
                slo_p,
                f"{k_c}/{n_c} errors; exact binomial test against the SLO",
            ),
            _judged(
                "canary_error_ratio_upper_bound",
                upper,
                detect,
                "<",
                Outcome.PASS if ruled_out else Outcome.INCONCLUSIVE,
                "",
                note=bound_note,
            ),
        ]
    if n_c and n_r:
        ratio_p = error_rate_ratio_p_value(k_c, n_c, k_r, n_r, comparison.error_ratio_margin)
        judged.append(
            _judged(
                f"error_ratio_vs_{reference}",
                k_c / n_c,
                comparison.error_ratio_margin * k_r / n_r,
                "<=",
                Outcome.FAIL if ratio_p < level else Outcome.PASS,
                "",
                ratio_p,
                f"{k_c}/{n_c} vs {k_r}/{n_r}; margin x{comparison.error_ratio_margin:g}",
            )
        )
    judged += [
        _tail_slo(
            95, canary_ok, canary_summary.percentiles_ms["p95"], slo.p95_ms, comparison.p95_min_samples, level
        ),
        _tail_slo(
            99, canary_ok, canary_summary.percentiles_ms["p99"], slo.p99_ms, comparison.p99_min_samples, level
        ),
        _tail_comparison(
            canary_ok,
            reference_ok,
            comparison,
            level,
            final_look,
            _pair_of(canary_summary, reference_summary, f"p{TAIL_COMPARISON_QUANTILE}"),
        ),
    ]
    compared = compare_latency(
        canary_arrays,
        reference_arrays,
        comparison,
        level,
        final_look,
        _pair_of(canary_summary, reference_summary, "p50"),
    )
    judged += [
        _info("mann_whitney_p_value", compared.p_value),
        _judged(
            "median_shift_ms",
            compared.median_shift_ms,
            comparison.min_effect_ms,
            "<",
            Outcome.FAIL if compared.regressed else Outcome.PASS,
            "ms",
            compared.p_value,
            compared.reason,
        ),
        _info(f"{reference}_p95_ms", reference_summary.percentiles_ms["p95"], "ms"),
        _info(f"{reference}_error_ratio", reference_summary.error_ratio),
        _info("look_alpha", level),
    ]
    outcomes = [j.outcome for j in judged]
    outcome = (
        Outcome.FAIL
        if Outcome.FAIL in outcomes
        else Outcome.INCONCLUSIVE
        if Outcome.INCONCLUSIVE in outcomes
        else Outcome.PASS
    )
    failed = [j.measurement.name for j in judged if j.outcome is Outcome.FAIL]
    open_ = [j.measurement.name for j in judged if j.outcome is Outcome.INCONCLUSIVE]
    if not enough_canary:
        summary = (
            f"{step_percent}%: NO DATA - canary got {n_c} requests"
            f" (< {comparison.min_samples}); no data is a failure"
        )
    elif failed:
        notes = "; ".join(f"{j.measurement.name}: {j.note}" for j in judged if j.outcome is Outcome.FAIL)
        summary = f"{step_percent}%: failed {', '.join(failed)} ({notes})"
    elif open_:
        summary = f"{step_percent}%: INCONCLUSIVE on {', '.join(open_)} (not enough evidence either way)"
    else:
        summary = f"{step_percent}%: canary within SLOs and not worse than {reference} ({compared.reason})"
    return Verdict(
        gate=f"canary-{step_percent}",
        status=Status.PASS if outcome is Outcome.PASS else Status.FAIL,
        summary=summary,
        measurements=[j.measurement for j in judged],
        details={
            "step_percent": step_percent,
            "outcome": outcome.value,
            "outcomes": {j.measurement.name: j.outcome.value for j in judged},
            "tests": {
                j.measurement.name: {"p_value": j.p_value, "note": j.note}
                for j in judged
                if j.p_value is not None or j.note
            },
            "information": min(max(information, 0.0), 1.0),
            "look_alpha": level,
            "reference": reference,
            "canary": canary_summary.to_dict(),
            reference: reference_summary.to_dict(),
            "comparison": compared.to_dict(),
            "needed_canary_samples": needed_canary_samples(judged, k_c, comparison),
            "no_data_policy": "a canary with fewer than min_samples requests fails",
        },
    )


def needed_canary_samples(judged: list[Judged], errors: int, comparison: ComparisonConfig) -> int:
    """Canary requests the inconclusive measurements need (0 when none is inconclusive)."""
    need = 0
    for j in judged:
        if j.outcome is not Outcome.INCONCLUSIVE:
            continue
        name = j.measurement.name
        if name == "canary_error_ratio_upper_bound":
            # with the errors seen so far; more errors later raise the need again (the next look says)
            rule_out = samples_to_rule_out(errors, comparison.error_detect_ratio, comparison.error_beta)
            need = max(need, rule_out)
        elif name == "canary_p99_ms":
            need = max(need, comparison.p99_min_samples)
        else:
            need = max(need, comparison.p95_min_samples)
    return need
