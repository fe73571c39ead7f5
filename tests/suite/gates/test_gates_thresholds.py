from __future__ import annotations

import pytest
from immune_load.thresholds import (
    SampleMetrics,
    ThresholdError,
    broken_aborts,
    evaluate,
    load_thresholds,
    parse_duration_s,
    parse_expression,
    parse_thresholds,
    percentile,
)

from immune_suite.paths import LOAD_THRESHOLDS


def test_parses_k6_expressions() -> None:
    t = parse_expression("http_req_duration", "p(95)<200")
    assert (t.metric, t.aggregation, t.comparator, t.limit) == ("http_req_duration", "p(95)", "<", 200.0)
    assert t.percentile == 95.0
    assert parse_expression("http_req_duration", "p( 99.9 ) <= 1e3").aggregation == "p(99.9)"
    assert parse_expression("http_req_duration", "p(99.9)<=1e3").limit == 1000.0
    assert parse_expression("http_req_failed", "rate<0.001").aggregation == "rate"
    assert parse_expression("http_reqs", "count===5").comparator == "=="
    tagged = parse_expression("http_req_duration{name:/api/v1/events}", "med<50")
    assert tagged.tags == (("name", "/api/v1/events"),)
    assert tagged.name == "http_req_duration{name:/api/v1/events} med"


@pytest.mark.parametrize(
    ("metric", "expression"),
    [
        ("http_req_duration", "p95<200"),  # k6 needs p(N)
        ("http_req_duration", "rate<0.1"),  # a Trend has no rate
        ("http_req_failed", "p(95)<1"),  # a Rate has no percentile
        ("http_req_duration", "p(0)<1"),
        ("http_req_duration", "p(95)!=1"),
        ("no_such_metric", "count>0"),
        ("http_req_duration{colour:blue}", "avg<1"),
    ],
)
def test_rejects_what_k6_would_not_accept(metric: str, expression: str) -> None:
    with pytest.raises(ThresholdError):
        parse_expression(metric, expression)


def test_object_form_with_abort_and_delay() -> None:
    parsed = parse_thresholds(
        {
            "thresholds": {
                "http_req_failed": [{"threshold": "rate<0.01", "abortOnFail": True, "delayAbortEval": "10s"}],
                "http_req_duration": "p(99)<500",
            }
        }
    )
    failed = next(t for t in parsed if t.metric == "http_req_failed")
    assert failed.abort_on_fail and failed.delay_abort_eval_s == 10.0
    assert next(t for t in parsed if t.metric == "http_req_duration").abort_on_fail is False
    with pytest.raises(ThresholdError):
        parse_thresholds({"http_req_failed": [{"threshold": "rate<0.01", "abortOnFial": True}]})
    with pytest.raises(ThresholdError):
        parse_thresholds({})


def test_durations() -> None:
    assert parse_duration_s("500ms") == 0.5
    assert parse_duration_s("2m") == 120.0
    assert parse_duration_s("3") == 3.0
    with pytest.raises(ThresholdError):
        parse_duration_s("soon")


def test_the_shipped_thresholds_file_parses() -> None:
    thresholds = load_thresholds(LOAD_THRESHOLDS)
    names = {t.name for t in thresholds}
    assert {"http_req_duration p(95)", "http_req_duration p(99)", "http_req_failed rate"} <= names
    assert any(t.abort_on_fail for t in thresholds)


def test_percentile_is_nearest_rank() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99.9) == 100.0
    assert percentile([7.0], 50) == 7.0


def test_evaluation_against_samples() -> None:
    samples = [(float(ms), ms % 50 != 0, 1000.0 + i * 0.1) for i, ms in enumerate(range(1, 201))]
    source = SampleMetrics.of(samples)
    results = {
        r.threshold.name: r
        for r in evaluate(
            parse_thresholds(
                {
                    "http_req_duration": ["p(95)<200", "p(50)<=100", "max<150"],
                    "http_req_failed": ["rate<0.05"],
                    "http_reqs": ["count>=200"],
                }
            ),
            source,
        )
    }
    assert results["http_req_duration p(95)"].value == 190.0 and results["http_req_duration p(95)"].passed
    assert results["http_req_duration p(50)"].passed
    assert not results["http_req_duration max"].passed
    assert results["http_req_failed rate"].value == pytest.approx(4 / 200)
    assert results["http_reqs count"].passed


def test_no_data_fails_and_does_not_abort() -> None:
    thresholds = parse_thresholds({"http_req_failed": [{"threshold": "rate<0.01", "abortOnFail": True}]})
    empty = SampleMetrics.of([])
    [result] = evaluate(thresholds, empty)
    assert result.value is None and not result.passed
    assert result.to_measurement().passed is False
    assert broken_aborts(thresholds, empty, elapsed_s=100) == []


def test_abort_waits_for_its_delay() -> None:
    thresholds = parse_thresholds(
        {"http_req_failed": [{"threshold": "rate<0.01", "abortOnFail": True, "delayAbortEval": "5s"}]}
    )
    failing = SampleMetrics.of([(10.0, False, 1.0), (10.0, True, 2.0)])
    assert broken_aborts(thresholds, failing, elapsed_s=4.9) == []
    [broken] = broken_aborts(thresholds, failing, elapsed_s=5.0)
    assert broken.value == 0.5
