"""The `metrics:` section of a stack config: validated, never silently defaulted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from immune_suite.stack_config import MetricsConfig, load_stack


def test_the_local_stack_judges_its_canary_on_prometheus_too() -> None:
    local = load_stack("local")
    assert local.metrics is not None and local.metrics.provider == "prometheus"
    assert local.local.router_metrics_port is not None


@pytest.mark.parametrize(
    "bad",
    [
        {"provider": "datadog"},
        {"url": "127.0.0.1:19090"},
        {"max_error_ratio": 1.5},
        {"max_error_ratio": -0.1},
        {"latency_quantile": 1.0},
        {"max_latency_ms": 0},
        {"min_requests": 0},
        {"timeout_s": 0},
        {"exclude_routes": "/health/(("},
        {"treshold": 1},
    ],
)
def test_bad_metric_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MetricsConfig.model_validate(bad)


def test_the_url_loses_its_trailing_slash() -> None:
    assert MetricsConfig(url="http://127.0.0.1:19090/").url == "http://127.0.0.1:19090"
