"""The metric provider interface, after Flagger's (`pkg/metrics/providers`: `RunQuery`, `IsOnline`),
plus a range query for the series a record shows.

A provider answers one query with one number. Anything else is an exception, so no caller can read
a missing value as zero:

- `NoDataError`: the query matched nothing, or its value is NaN/infinite (0/0 when a colour served
  no request, a histogram quantile of no observations), or the data is stale;
- `ProviderError`: the provider is down, too slow, answered an HTTP error, malformed JSON or an
  error status, or the query itself is invalid.
"""

from __future__ import annotations

from typing import Protocol


class ProviderError(RuntimeError):
    """The provider could not answer (down, slow, 5xx, malformed reply, bad query)."""


class NoDataError(RuntimeError):
    """The provider answered, but with no usable value (empty result, NaN, infinite or stale)."""


class MetricProvider(Protocol):
    name: str

    def run_query(self, query: str, at: float) -> float:
        """The single value of `query` evaluated at Unix time `at` (s); NoDataError, ProviderError."""
        ...

    def run_range_query(
        self, query: str, start: float, end: float, step_s: float
    ) -> list[tuple[float, float]]:
        """`(unix_s, value)` points of `query` over [start, end] (Unix s) every `step_s` s.

        NoDataError, ProviderError as `run_query`.
        """
        ...

    def is_online(self) -> None:
        """Return when the provider answers queries; ProviderError otherwise."""
        ...
