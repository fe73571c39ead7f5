"""PrometheusProvider against a real local HTTP server answering like Prometheus, healthy or broken."""

from __future__ import annotations

import json

import pytest

from immune_suite.metrics.prometheus import PrometheusProvider
from immune_suite.metrics.provider import NoDataError, ProviderError
from tests.suite.metrics.fake_prometheus import FakePrometheus, Reply, serving, vector
from tests.support.ports import free_port


def provider(url: str, timeout_s: float = 1.0, attempts: int = 3) -> PrometheusProvider:
    return PrometheusProvider(url, timeout_s=timeout_s, attempts=attempts, backoff_s=0.01)


def test_an_instant_query_returns_its_one_value_at_the_time_asked() -> None:
    with serving(FakePrometheus(answer=lambda query: 0.25)) as fake:
        assert provider(fake.url).run_query("sum(rate(x[30s]))", at=1700000000.5) == 0.25
    assert fake.requests[-1] == {
        "path": "/api/v1/query",
        "query": "sum(rate(x[30s]))",
        "time": "1700000000.500",
    }


def test_a_scalar_result_is_a_value() -> None:
    scalar = Reply(
        200, json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}})
    )
    with serving(FakePrometheus(answer=lambda query: scalar)) as fake:
        assert provider(fake.url).run_query("7", at=1) == 7.0


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
def test_nan_or_infinite_is_no_data(value: str) -> None:
    with (
        serving(FakePrometheus(answer=lambda query: vector(value))) as fake,
        pytest.raises(NoDataError, match="no data"),
    ):
        provider(fake.url).run_query("a / b", at=1)


def test_an_empty_result_is_no_data() -> None:
    with (
        serving(FakePrometheus(answer=lambda query: None)) as fake,
        pytest.raises(NoDataError, match="matched no series"),
    ):
        provider(fake.url).run_query("up{color='none'}", at=1)


def test_several_series_is_an_error_not_a_pick() -> None:
    with (
        serving(FakePrometheus(answer=lambda query: vector(1, series=2))) as fake,
        pytest.raises(ProviderError, match="2 series"),
    ):
        provider(fake.url).run_query("up", at=1)


def test_a_down_prometheus_is_a_clear_error_after_the_retries() -> None:
    with pytest.raises(ProviderError, match=r"unreachable.*after 3 attempt"):
        provider(f"http://127.0.0.1:{free_port()}").run_query("up", at=1)


def test_a_slow_prometheus_times_out_and_is_retried() -> None:
    with serving(FakePrometheus(mode="slow", slow_s=1.0)) as fake:
        with pytest.raises(ProviderError, match=r"did not answer within 0.2 s.*after 2 attempt"):
            provider(fake.url, timeout_s=0.2, attempts=2).run_query("up", at=1)
    assert len(fake.requests) == 2


def test_5xx_is_retried_then_an_error_naming_the_status() -> None:
    with serving(FakePrometheus(mode="5xx")) as fake:
        with pytest.raises(ProviderError, match=r"HTTP 503: unavailable: overloaded.*after 3 attempt"):
            provider(fake.url).run_query("up", at=1)
    assert len(fake.requests) == 3


def test_a_5xx_then_an_answer_succeeds() -> None:
    calls: list[str] = []

    def flaky(query: str) -> float | Reply:
        calls.append(query)
        return Reply(503, "busy") if len(calls) == 1 else 2.0

    with serving(FakePrometheus(answer=flaky)) as fake:
        assert provider(fake.url).run_query("up", at=1) == 2.0
    assert len(calls) == 2


def test_malformed_json_is_an_error_without_retry() -> None:
    with serving(FakePrometheus(mode="malformed")) as fake:
        with pytest.raises(ProviderError, match="malformed JSON"):
            provider(fake.url).run_query("up", at=1)
    assert len(fake.requests) == 1


def test_a_bad_query_is_an_error_with_prometheus_reason() -> None:
    bad = Reply(
        400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})
    )
    with serving(FakePrometheus(answer=lambda query: bad)) as fake:
        with pytest.raises(ProviderError, match=r"HTTP 400.*bad_data: parse error"):
            provider(fake.url).run_query("up{", at=1)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success"},
        {"status": "success", "data": {"resultType": "vector"}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}},
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
    ],
)
def test_a_reply_of_the_wrong_shape_is_an_error(body: dict[str, object]) -> None:
    with serving(FakePrometheus(answer=lambda query: Reply(200, json.dumps(body)))) as fake:
        with pytest.raises(ProviderError):
            provider(fake.url).run_query("up", at=1)


def test_a_range_query_returns_its_finite_points() -> None:
    with serving(FakePrometheus()) as fake:
        points = provider(fake.url).run_range_query("rate(x[5s])", 1, 3, 1)
    assert points == [(2.0, 3.0), (3.0, 4.5)]
    assert fake.requests[-1]["path"] == "/api/v1/query_range" and fake.requests[-1]["step"] == "1"


def test_is_online_and_the_loaded_configuration() -> None:
    with serving(FakePrometheus(config_yaml="scrape_configs: [{job_name: x}]\n")) as fake:
        provider(fake.url).is_online()
        assert "job_name: x" in provider(fake.url).config_yaml()
    with pytest.raises(ProviderError):
        provider(fake.url, attempts=1).is_online()
