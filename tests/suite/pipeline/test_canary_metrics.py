"""A canary step's verdict with the metric checks folded in: a metric failure fails a passing step."""

from __future__ import annotations

from immune_suite.metrics.checks import GATE
from immune_suite.pipeline.canary_metrics import judge_step_metrics, with_metrics
from immune_suite.stack_config import MetricsConfig
from immune_suite.targets.base import Color, Release
from immune_suite.verdict import Measurement, Status, Verdict

STEP = Verdict(
    "canary-25",
    Status.PASS,
    "canary ok",
    [Measurement("errors", 0, 1, "<=", True)],
    details={"outcome": "pass"},
)


def metrics(status: Status) -> Verdict:
    return Verdict(
        GATE,
        status,
        f"metrics {status}",
        [Measurement("app_error_ratio", 0.2, 0.05, "<=", status is Status.PASS)],
    )


def test_passing_metrics_keep_the_step_passing_and_are_recorded() -> None:
    combined = with_metrics(STEP, metrics(Status.PASS))
    assert combined.status is Status.PASS and combined.details["metrics"]["judged"] is True
    assert [m.name for m in combined.measurements] == ["errors", "metrics.app_error_ratio"]


def test_failing_metrics_fail_a_step_its_samples_passed() -> None:
    combined = with_metrics(STEP, metrics(Status.FAIL))
    assert combined.status is Status.FAIL and combined.outcome.value == "fail"
    assert combined.summary == "canary ok; metrics fail" and combined.details["decided_by"] == "metric checks"


def test_a_step_failed_by_its_samples_says_the_metrics_were_not_judged() -> None:
    failed = Verdict("canary-25", Status.FAIL, "bad", details={"outcome": "fail"})
    combined = with_metrics(failed, None)
    assert combined.status is Status.FAIL and combined.details["metrics"] == {
        "judged": False,
        "reason": "the step failed on its samples",
    }


def test_a_target_that_names_no_series_fails_the_check() -> None:
    class Blind:
        name = "blind"

    verdict = judge_step_metrics(Blind(), MetricsConfig(), Color.GREEN, Release("v2", "HEAD", "x"), 0, 1)
    assert verdict.status is Status.FAIL and "no metric data" in verdict.summary
