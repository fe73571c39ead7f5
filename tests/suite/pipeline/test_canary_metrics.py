"""A canary step's verdict with the metric checks folded in: a metric failure fails a passing step."""

from __future__ import annotations

import time

from immune_suite.metrics.checks import GATE, ColorSelectors
from immune_suite.pipeline.canary_metrics import judge_step_metrics, with_metrics
from immune_suite.stack_config import MetricsConfig
from immune_suite.targets.base import Color, Release, TargetError
from immune_suite.verdict import Measurement, Status, Verdict
from tests.suite.metrics.fake_prometheus import FakePrometheus, serving

RELEASE = Release("v2", "HEAD", "x")
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


class OwnPrometheus:
    """A target naming its colour's series and its own Prometheus (as the Kubernetes target does)."""

    name = "own"

    def __init__(self, url: str | None) -> None:
        self.url = url

    def metric_selectors(self, color: Color, release: Release) -> ColorSelectors:
        app = f'job="immune-core",namespace="ns",color="{color.value}"'
        return ColorSelectors(color=color.value, release=release.version, app=app, targets=(app,))

    def metrics_url(self) -> str:
        if self.url is None:
            raise TargetError("service ns/prometheus: HTTP 404 Not Found")
        return self.url


def healthy(query: str) -> float:
    if query.startswith("min(timestamp(up"):
        return time.time()
    if query.startswith("1000 * histogram_quantile"):
        return 42.0
    return 0.0 if query.startswith("(sum(increase(") else 400.0  # error ratio, else request counts


def test_the_targets_own_prometheus_is_queried_when_the_stack_names_none() -> None:
    config = MetricsConfig(freshness_timeout_s=1.0)
    with serving(FakePrometheus(answer=healthy)) as fake:
        now = time.time()
        verdict = judge_step_metrics(OwnPrometheus(fake.url), config, Color.GREEN, RELEASE, now - 30, now)
    assert verdict.status is Status.PASS, verdict.summary
    assert any('color="green"' in r.get("query", "") for r in fake.requests)


def test_a_target_that_cannot_say_where_its_prometheus_is_fails_the_check() -> None:
    verdict = judge_step_metrics(OwnPrometheus(None), MetricsConfig(), Color.GREEN, RELEASE, 0, 1)
    assert verdict.status is Status.FAIL
    assert "cannot name its metrics" in verdict.summary and "HTTP 404" in verdict.summary


def test_a_targets_prometheus_that_is_down_fails_the_check() -> None:
    with serving(FakePrometheus()) as fake:
        url = fake.url  # stopped on leaving the block: nothing listens there any more
    config = MetricsConfig(freshness_timeout_s=1.0, attempts=1)
    verdict = judge_step_metrics(OwnPrometheus(url), config, Color.GREEN, RELEASE, 0, 1)
    assert verdict.status is Status.FAIL and verdict.details.get("error"), verdict.summary
