"""Metric providers for canary analysis: the metrics system's view of each colour (Flagger style).

`provider.MetricProvider` is the interface (one query in, one number out, or a clear error);
`prometheus.PrometheusProvider` implements it over Prometheus's HTTP API; `checks` turns a colour's
PromQL (request count, error ratio, latency quantile; app and router) into a verdict. Beside the load
generator's samples (immune_suite/analysis.py), these checks see every request a colour served,
whoever sent it. No data is a failure, never a pass.
"""

from immune_suite.metrics.provider import MetricProvider, NoDataError, ProviderError

__all__ = ["MetricProvider", "NoDataError", "ProviderError"]
