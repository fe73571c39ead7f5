"""A metric provider over Prometheus's HTTP API (instant and range queries).

Source: Prometheus documentation, "HTTP API" (`/api/v1/query`, `/api/v1/query_range`,
`/api/v1/status/config`): every reply is JSON `{"status": "success"|"error", "data": ...}`; an instant
query's `data` is `{"resultType": "vector"|"scalar", "result": ...}` with values as `[unix_s, "text"]`.

Requests time out after `timeout_s`; transport failures, timeouts and 5xx are retried `attempts` times
with exponential backoff (tenacity), then the provider is down: `ProviderError`. A 4xx (a bad query)
or a malformed reply is not retried: asking again gets the same answer. An empty result and a NaN or
infinite value are `NoDataError`: a canary check on them fails.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from immune_suite.metrics.provider import NoDataError, ProviderError

DEFAULT_URL = "http://127.0.0.1:19090"  # scripts/services/prometheus.sh


class _Unavailable(ProviderError):
    """A failure worth retrying: the server was unreachable, too slow or answered 5xx."""


class PrometheusProvider:
    name = "prometheus"

    def __init__(self, url: str, timeout_s: float = 5.0, attempts: int = 3, backoff_s: float = 0.2) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    def _get(self, path: str, params: dict[str, str]) -> Any:
        """`data` of a successful reply to GET `path`; ProviderError otherwise."""
        retrying = Retrying(
            retry=retry_if_exception_type(_Unavailable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=self.backoff_s * 8),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._get_once(path, params)
        except _Unavailable as error:
            raise ProviderError(f"{error} (after {self.attempts} attempt(s))") from error
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    def _get_once(self, path: str, params: dict[str, str]) -> Any:
        where = f"Prometheus at {self.url}"
        try:
            # trust_env=False: a proxy from the environment must not carry loopback queries elsewhere.
            response = httpx.get(f"{self.url}{path}", params=params, timeout=self.timeout_s, trust_env=False)
        except httpx.TimeoutException as error:
            raise _Unavailable(f"{where} did not answer within {self.timeout_s:g} s: {error!r}") from error
        except httpx.HTTPError as error:
            raise _Unavailable(f"{where} is unreachable: {error!r}") from error
        if response.status_code >= 500:
            raise _Unavailable(f"{where} answered HTTP {response.status_code}: {_error_text(response)}")
        try:
            body = response.json()
        except ValueError as error:
            raise ProviderError(
                f"{where} answered HTTP {response.status_code} with malformed JSON: {response.text[:200]!r}"
            ) from error
        if not isinstance(body, dict) or body.get("status") != "success" or response.status_code != 200:
            raise ProviderError(
                f"{where} refused the request (HTTP {response.status_code}): {_error_text(response)}"
            )
        if "data" not in body:
            raise ProviderError(f"{where} answered success without data: {response.text[:200]!r}")
        return body["data"]

    def is_online(self) -> None:
        self._get("/api/v1/query", {"query": "1"})

    def run_query(self, query: str, at: float) -> float:
        """The one value of an instant query at Unix time `at` (s).

        The query must aggregate to a scalar or a single series: several series is a ProviderError (a
        query that does not say how to combine replicas is a bug, not a measurement).
        """
        data = self._get("/api/v1/query", {"query": query, "time": f"{at:.3f}"})
        try:
            kind, result = data["resultType"], data["result"]
            if kind == "scalar":
                return _finite(result[1], query)
            if kind != "vector":
                raise ProviderError(f"query {query!r} returned a {kind}, not a vector or scalar")
            if not result:
                raise NoDataError(f"no data: {query!r} matched no series")
            if len(result) > 1:
                raise ProviderError(
                    f"query {query!r} returned {len(result)} series; it must aggregate to one"
                )
            return _finite(result[0]["value"][1], query)
        except (KeyError, IndexError, TypeError) as error:
            raise ProviderError(f"malformed reply to {query!r}: {str(data)[:200]}") from error

    def run_range_query(
        self, query: str, start: float, end: float, step_s: float
    ) -> list[tuple[float, float]]:
        """`(unix_s, value)` points of a single-series range query; NaN points are dropped.

        An empty result, or no finite point, is NoDataError.
        """
        data = self._get(
            "/api/v1/query_range",
            {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"},
        )
        try:
            if data["resultType"] != "matrix":
                raise ProviderError(f"range query {query!r} returned a {data['resultType']}, not a matrix")
            result = data["result"]
            if len(result) > 1:
                raise ProviderError(f"range query {query!r} returned {len(result)} series; it must aggregate")
            points = [(float(t), float(v)) for t, v in (result[0]["values"] if result else [])]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ProviderError(f"malformed reply to {query!r}: {str(data)[:200]}") from error
        finite = [(t, v) for t, v in points if math.isfinite(v)]
        if not finite:
            raise NoDataError(f"no data: {query!r} has no finite point in [{start:.0f}, {end:.0f}]")
        return finite

    def config_yaml(self) -> str:
        """The configuration Prometheus has loaded (YAML text)."""
        data = self._get("/api/v1/status/config", {})
        text = data.get("yaml") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise ProviderError(f"malformed reply to /api/v1/status/config: {str(data)[:200]}")
        return text


def _finite(text: Any, query: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError) as error:
        raise ProviderError(f"query {query!r} returned a non-number {text!r}") from error
    if not math.isfinite(value):
        # 0/0 (no request at all), histogram_quantile of an empty histogram: not a measurement.
        raise NoDataError(f"no data: {query!r} is {value}")
    return value


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and body.get("error"):
        return f"{body.get('errorType', 'error')}: {body['error']}"
    return response.text[:200]
