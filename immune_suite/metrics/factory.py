"""The metric provider a stack's `metrics:` configuration names."""

from __future__ import annotations

import os

from immune_suite.metrics.prometheus import DEFAULT_URL, PrometheusProvider
from immune_suite.metrics.provider import MetricProvider
from immune_suite.stack_config import MetricsConfig


def provider_url(config: MetricsConfig) -> str:
    """`metrics.url`, else `IMMUNE_PROMETHEUS_URL` (scripts/services/up.sh exports it), else the default."""
    return config.url or os.environ.get("IMMUNE_PROMETHEUS_URL") or DEFAULT_URL


def provider_for(config: MetricsConfig, url: str | None = None) -> MetricProvider:
    """The provider at `url` (a target's own Prometheus), else at `provider_url(config)`."""
    # One provider type so far; `config.provider` is a Literal, validated when the stack is loaded.
    return PrometheusProvider(
        url or provider_url(config), timeout_s=config.timeout_s, attempts=config.attempts
    )
