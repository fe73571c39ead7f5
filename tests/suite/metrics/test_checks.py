"""The metric checks of a colour: each measurement against its threshold; no data and errors fail."""

from __future__ import annotations

import re
import time

import pytest

from immune_suite.metrics.checks import ColorSelectors, judge_color, label_value, queries, wait_fresh
from immune_suite.metrics.prometheus import PrometheusProvider
from immune_suite.metrics.provider import NoDataError
from immune_suite.stack_config import MetricsConfig
from immune_suite.verdict import Status, Verdict
from tests.suite.metrics.fake_prometheus import FakePrometheus, Reply, serving, vector

CONFIG = MetricsConfig(
    min_requests=20, max_error_ratio=0.05, latency_quantile=0.99, max_latency_ms=500, freshness_timeout_s=1.0
)
SELECTORS = ColorSelectors(
    color="green",
    release="v2",
    app='stack="s",color="green",release="v2"',
    targets=('stack="s",color="green",release="v2"', 'stack="s",component="router"'),
    router='stack="s",server=~"green-[0-9]+"',
)
HEALTHY = {
    "app_requests": 400.0,
    "app_error_ratio": 0.0,
    "app_latency_p99_ms": 42.0,
    "router_requests": 400.0,
    "router_error_ratio": 0.0,
}


def answering(
    values: dict[str, float | Reply | None], fresh_at: float | None = None, up: float = 1.0
) -> FakePrometheus:
    """A fake whose answer to each planned query is `values[name]`; scrapes fresh as of `fresh_at`,
    the last scrape of every target `up` (1: succeeded)."""
    planned = {query: name for name, query in queries(SELECTORS, CONFIG, 1).items()}

    def answer(query: str) -> float | Reply | None:
        if query.startswith("min(timestamp(up"):
            return fresh_at if fresh_at is not None else time.time()
        if query.startswith("min(up"):
            return up
        # The window's length differs run to run: match the query with it set to 1 s.
        name = planned.get(re.sub(r"\[\d+s\]", "[1s]", query))
        if name is None:
            raise AssertionError(f"unplanned query {query}")
        return values[name]

    return FakePrometheus(answer=answer)


def judge(fake: FakePrometheus, config: MetricsConfig = CONFIG) -> Verdict:
    now = time.time()
    return judge_color(
        PrometheusProvider(fake.url, 1.0, 2, 0.01), SELECTORS, config, now - 30, now, poll_s=0.05
    )


def test_a_healthy_colour_passes_with_every_measurement_recorded() -> None:
    with serving(answering(dict(HEALTHY))) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.PASS, verdict.summary
    assert {m.name: m.value for m in verdict.measurements} == HEALTHY
    assert verdict.details["window_s"] >= 30 and "router_error_ratio" in verdict.details["queries"]
    # The second-by-second series come from range queries (the fake's matrix; its NaN point dropped).
    assert verdict.details["series"]["app_request_rate"] == [[2.0, 3.0], [3.0, 4.5]]


@pytest.mark.parametrize(
    ("name", "value"),
    [("app_error_ratio", 0.2), ("router_error_ratio", 0.06), ("app_latency_p99_ms", 900.0)],
)
def test_a_breach_of_any_threshold_fails(name: str, value: float) -> None:
    with serving(answering({**HEALTHY, name: value})) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL
    assert name in verdict.summary and not next(m for m in verdict.measurements if m.name == name).passed


@pytest.mark.parametrize("name", list(HEALTHY))
def test_no_data_in_any_measurement_fails(name: str) -> None:
    with serving(answering({**HEALTHY, name: None})) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and "no data" in verdict.summary
    assert verdict.details["no_data"][name]


def test_nan_is_no_data_and_fails() -> None:
    with serving(answering({**HEALTHY, "app_error_ratio": vector("NaN")})) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and "no data" in verdict.details["no_data"]["app_error_ratio"]


def test_too_few_requests_is_no_data_and_fails() -> None:
    with serving(answering({**HEALTHY, "app_requests": 5.0})) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and "5 request(s) in the window, fewer than 20" in verdict.summary


def test_stale_data_fails() -> None:
    with serving(answering(dict(HEALTHY), fresh_at=1.0)) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and "stale data" in verdict.summary


def test_a_target_down_fails_its_counts_are_missing() -> None:
    with serving(answering(dict(HEALTHY), up=0.0)) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and "is down" in verdict.summary


def test_no_scrape_target_fails() -> None:
    fake = answering(dict(HEALTHY))
    fake.answer = lambda query: None
    with serving(fake):
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and "no scrape target matches" in verdict.summary


@pytest.mark.parametrize("mode", ["5xx", "malformed", "slow"])
def test_a_broken_provider_fails(mode: str) -> None:
    with serving(FakePrometheus(mode=mode, slow_s=1.5)) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and verdict.details["error"]


def test_a_provider_failing_mid_way_fails() -> None:
    with serving(answering({**HEALTHY, "app_latency_p99_ms": Reply(503, "down")})) as fake:
        verdict = judge(fake)
    assert verdict.status is Status.FAIL and "HTTP 503" in verdict.summary


def test_wait_fresh_returns_once_every_target_was_scraped_after_the_window() -> None:
    stamps = iter([10.0, 25.0, 25.0])

    def answer(query: str) -> float:
        return 1.0 if query.startswith("min(up") else next(stamps)

    with serving(FakePrometheus(answer=answer)) as fake:
        at = wait_fresh(PrometheusProvider(fake.url), SELECTORS, after=20.0, timeout_s=5, poll_s=0.01)
    # First poll: stale; second: each selector fresh and up.
    assert at > 20 and len(fake.requests) == 5


def test_wait_fresh_gives_up_on_stale_data() -> None:
    with serving(FakePrometheus(answer=lambda query: 1.0)) as fake, pytest.raises(NoDataError, match="stale"):
        wait_fresh(PrometheusProvider(fake.url), SELECTORS, after=20.0, timeout_s=0.1, poll_s=0.01)


def test_queries_select_the_colour_and_escape_values() -> None:
    assert label_value('a"b\\c') == '"a\\"b\\\\c"'
    planned = queries(SELECTORS, CONFIG, 42)
    assert all("[42s]" in q for q in planned.values())
    assert 'status=~"5.."' in planned["app_error_ratio"] and "or vector(0)" in planned["app_error_ratio"]
    assert planned["app_latency_p99_ms"].startswith("1000 * histogram_quantile(0.99, sum by (le) (rate(")
    assert 'code="5xx"' in planned["router_error_ratio"]
    without_router = ColorSelectors("blue", "v1", 'color="blue"', ('color="blue"',))
    assert set(queries(without_router, CONFIG, 1)) == {
        "app_requests",
        "app_error_ratio",
        "app_latency_p99_ms",
    }
