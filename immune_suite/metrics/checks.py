"""The canary's metric checks: one colour's release, as the metrics system saw it over a window.

Flagger's built-in checks ("request-success-rate", "request-duration"), as PromQL over the app's
request histogram (`immune_http_request_duration_seconds{method,route,status}`, app/immune_core/
observability/metrics.py) and, when the target has one, the router's per-server responses by class
(HAProxy's exporter: `haproxy_server_http_responses_total{proxy,server,code}`, HAProxy 2.6
"Prometheus exporter" docs). The router counts what the proxy itself answered for a colour (its own
502/503 when a replica died included); the app counts what the replicas answered. Each must pass.

Measured, per window [start, end] (Unix s), evaluated once every scrape target of the colour has been
scraped after `end` (else the data is stale: no data):

- `app_requests` / `router_requests`: requests in the window, `sum(increase(...[w]))`; below
  `min_requests` is no data;
- `app_error_ratio` / `router_error_ratio`: 5xx / all over the window (Prometheus counts every
  response, not a sample: no statistics needed, only the threshold `max_error_ratio`);
- `app_latency_pNN_ms`: `histogram_quantile(q, sum by (le) (rate(..._bucket[w])))` of the non-5xx
  requests (a fast 500 must not make a colour look quick), in ms, against `max_latency_ms`.

A query with no result, NaN or an infinite value fails its measurement ("no data"), a provider
error fails the whole verdict; neither ever passes. Known limit: the app creates a status's series
at its first request with that status, and `increase` cannot count the requests a series already
had at its first scrape (scraped every second on the local stack, at most a second's worth).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from immune_suite.metrics.provider import MetricProvider, NoDataError, ProviderError
from immune_suite.stack_config import MetricsConfig
from immune_suite.verdict import Measurement, Status, Verdict

GATE = "canary-metrics"
APP_HISTOGRAM = "immune_http_request_duration_seconds"
# The router's responses counter and the matcher of its 5xx among them, per router: HAProxy's
# exporter counts by class (`code="5xx"`), Traefik by status (`code="502"`).
ROUTER_RESPONSES = "haproxy_server_http_responses_total"
ROUTER_5XX = 'code="5xx"'
TRAEFIK_RESPONSES = "traefik_service_requests_total"
TRAEFIK_5XX = 'code=~"5.."'


def label_value(value: str) -> str:
    """`value` as a PromQL double-quoted string (backslash and quote escaped, as in Go strings)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True)
class ColorSelectors:
    """PromQL label matchers (comma-separated, no braces) that pick one colour's release.

    `app`: the app's request histogram series of that release; `targets`: selectors of the `up`
    series of every scrape target whose data the checks use (freshness; a scrape target is fresh
    once scraped after the window); `router`: the router's per-server series for
    that colour, None when the target has no router metrics; `router_metric` and `router_5xx`: that
    router's responses counter and the matcher of its 5xx responses.
    """

    color: str
    release: str
    app: str
    targets: tuple[str, ...]
    router: str | None = None
    router_metric: str = ROUTER_RESPONSES
    router_5xx: str = ROUTER_5XX


def queries(selectors: ColorSelectors, config: MetricsConfig, window_s: int) -> dict[str, str]:
    """Measurement name -> PromQL over the last `window_s` seconds (a whole number, >= 1)."""
    routes = f"route!~{label_value(config.exclude_routes)}"
    app = f"{selectors.app},{routes}"
    count = f"{APP_HISTOGRAM}_count"
    w = f"[{window_s}s]"
    quantile = round(config.latency_quantile * 100, 3)
    found = {
        "app_requests": f"sum(increase({count}{{{app}}}{w}))",
        # `or vector(0)`: no 5xx series at all means no error, not no data; the denominator has none
        # when no request was served, and 0/0 is NaN: no data.
        "app_error_ratio": (
            f'(sum(increase({count}{{{app},status=~"5.."}}{w})) or vector(0))'
            f" / sum(increase({count}{{{app}}}{w}))"
        ),
        f"app_latency_p{quantile:g}_ms": (
            f"1000 * histogram_quantile({config.latency_quantile:g},"
            f' sum by (le) (rate({APP_HISTOGRAM}_bucket{{{app},status!~"5.."}}{w})))'
        ),
    }
    if selectors.router is not None:
        router, metric = selectors.router, selectors.router_metric
        found["router_requests"] = f"sum(increase({metric}{{{router}}}{w}))"
        found["router_error_ratio"] = (
            f"(sum(increase({metric}{{{router},{selectors.router_5xx}}}{w})) or vector(0))"
            f" / sum(increase({metric}{{{router}}}{w}))"
        )
    return found


def threshold(name: str, config: MetricsConfig) -> tuple[float, str, str]:
    """(threshold, comparator, unit) of a measurement."""
    if name.endswith("_requests"):
        return float(config.min_requests), ">=", "requests"
    if name.endswith("_error_ratio"):
        return config.max_error_ratio, "<=", "ratio"
    return config.max_latency_ms, "<=", "ms"


def wait_fresh(
    provider: MetricProvider,
    selectors: ColorSelectors,
    after: float,
    timeout_s: float,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.time,
) -> float:
    """Wait until every scrape target of the colour has a successful scrape newer than `after` (Unix s).

    Returns the time (Unix s) at which that held, to evaluate the window's queries at. NoDataError when
    some selector matches no target, or some target's last scrape is still older than `after`, after
    `timeout_s` (stale data); ProviderError when the provider fails.
    """
    deadline = clock() + timeout_s
    while True:
        now = clock()
        problem = _staleness(provider, selectors, after, now)
        if problem is None:
            return now
        if clock() >= deadline:
            raise NoDataError(f"stale data: {problem} (waited {timeout_s:g} s)")
        time.sleep(poll_s)


def _staleness(provider: MetricProvider, selectors: ColorSelectors, after: float, now: float) -> str | None:
    """Why the data of `selectors` is not yet fresh at `now`, or None when it is."""
    for matchers in selectors.targets:
        try:
            oldest = provider.run_query(f"min(timestamp(up{{{matchers}}}))", now)
        except NoDataError:
            return f"no scrape target matches {{{matchers}}}"
        if oldest < after:
            return (
                f"a target of {{{matchers}}} was last scraped {after - oldest:.1f} s before the window's end"
            )
        # A target whose last scrape failed (up == 0) holds counts nobody read: missing data.
        if provider.run_query(f"min(up{{{matchers}}})", now) < 1:
            return f"a target of {{{matchers}}} is down (its last scrape failed): its counts are missing"
    return None


def judge_color(
    provider: MetricProvider,
    selectors: ColorSelectors,
    config: MetricsConfig,
    start: float,
    end: float,
    poll_s: float = 0.5,
) -> Verdict:
    """The metric checks of one colour's release over [start, end] (Unix s): PASS only if all pass.

    Details: `queries` (name -> PromQL), `window_start`/`window_end`/`evaluated_at` (Unix s),
    `window_s`, `freshness_wait_s`, `no_data` (name -> reason), `series`, `provider`; on a provider
    failure or stale data, `error`.
    """
    base = {"provider": provider.name, "color": selectors.color, "release": selectors.release}
    try:
        began = time.monotonic()
        at = wait_fresh(provider, selectors, end, config.freshness_timeout_s, poll_s)
        waited_s = time.monotonic() - began
    except (NoDataError, ProviderError) as error:
        return _failed(f"metrics of {selectors.color}: {error}", base)
    window_s = max(1, math.ceil(at - start))
    planned = queries(selectors, config, window_s)
    measurements: list[Measurement] = []
    no_data: dict[str, str] = {}
    for name, query in planned.items():
        limit, comparator, unit = threshold(name, config)
        try:
            value: float | None = provider.run_query(query, at)
        except NoDataError as error:
            value, no_data[name] = None, str(error)
        except ProviderError as error:
            return _failed(f"metrics of {selectors.color}: {error}", {**base, "queries": planned})
        if value is not None and name.endswith("_requests") and value < limit:
            no_data[name] = f"no data: {value:.0f} request(s) in the window, fewer than {limit:.0f}"
        passed = value is not None and (value >= limit if comparator == ">=" else value <= limit)
        measurements.append(Measurement(name, value, limit, comparator, passed, unit))
    failed = [m for m in measurements if not m.passed]
    details = {
        **base,
        "queries": planned,
        "window_start": start,
        "window_end": end,
        "evaluated_at": at,
        "freshness_wait_s": round(waited_s, 3),  # from the window's end to fresh scrapes of every target
        "window_s": window_s,
        "no_data": no_data,
        "series": series(provider, selectors, config, start, at),
    }
    if not failed:
        summary = f"metrics of {selectors.color}: " + ", ".join(_shown(m) for m in measurements)
        return Verdict(GATE, Status.PASS, summary, measurements, details=details)
    reasons = [no_data.get(m.name) or f"{_shown(m)} (limit {m.comparator} {m.threshold:g})" for m in failed]
    summary = f"metrics of {selectors.color} fail: " + "; ".join(reasons)
    return Verdict(GATE, Status.FAIL, summary, measurements, details=details)


def series(
    provider: MetricProvider, selectors: ColorSelectors, config: MetricsConfig, start: float, end: float
) -> dict[str, Any]:
    """The colour's request rate (req/s) and error ratio, second by second over the window (range
    queries over 5 s rates), for the record and the report. They show, they do not decide: the
    instant checks above do; a series without data is recorded as its reason."""
    routes = f"route!~{label_value(config.exclude_routes)}"
    count = f"{APP_HISTOGRAM}_count{{{selectors.app},{routes}"
    wanted = {
        "app_request_rate": f"sum(rate({count}}}[5s]))",
        "app_error_ratio": (
            f'(sum(rate({count},status=~"5.."}}[5s])) or vector(0)) / sum(rate({count}}}[5s]))'
        ),
    }
    found: dict[str, Any] = {}
    for name, query in wanted.items():
        try:
            found[name] = [[round(t, 3), v] for t, v in provider.run_range_query(query, start, end, 1.0)]
        except (NoDataError, ProviderError) as error:
            found[name] = str(error)
    return found


def _shown(measurement: Measurement) -> str:
    value = measurement.value
    shown = "no data" if value is None else f"{value:.4g}"
    return f"{measurement.name}={shown}"


def _failed(summary: str, details: Mapping[str, object]) -> Verdict:
    return Verdict(GATE, Status.FAIL, summary, details={**details, "error": summary})
