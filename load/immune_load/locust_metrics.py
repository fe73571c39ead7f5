"""Answers k6-style thresholds from locust's own request statistics.

k6's `http_*` metrics cover HTTP only, so WebSocket activity (logged with request type `WS`) is left
out of them. Tag filters select locust entries by request name or method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from locust.stats import RequestStats, StatsEntry

WEBSOCKET_REQUEST_TYPE = "WS"


class LocustStatsSource:
    def __init__(self, stats: RequestStats) -> None:
        self._stats = stats

    def http_entry(self, tags: Mapping[str, str] | None = None) -> StatsEntry:
        """All HTTP entries matching the tags, merged into one aggregate entry."""
        tags = tags or {}
        merged = StatsEntry(self._stats, "http", "", use_response_times_cache=False)
        merged.start_time = self._stats.start_time
        for (name, method), entry in list(self._stats.entries.items()):
            if method == WEBSOCKET_REQUEST_TYPE:
                continue
            if "name" in tags and name != tags["name"]:
                continue
            if "method" in tags and method.upper() != tags["method"].upper():
                continue
            merged.extend(entry)
        return merged

    def value(self, metric: str, aggregation: str, tags: Mapping[str, str]) -> float | None:
        entry = self.http_entry(tags)
        if entry.num_requests == 0:
            return None
        if metric == "http_reqs":
            if aggregation == "count":
                return float(entry.num_requests)
            elapsed = (entry.last_request_timestamp or 0.0) - self._stats.start_time
            return entry.num_requests / elapsed if elapsed > 0 else None
        if metric == "http_req_failed":
            return entry.num_failures / entry.num_requests
        timed = entry.num_requests - entry.num_none_requests
        if timed <= 0:
            return None
        if aggregation == "avg":
            return float(entry.avg_response_time)
        if aggregation == "min":
            return float(entry.min_response_time or 0)
        if aggregation == "max":
            return float(entry.max_response_time)
        pct = 50.0 if aggregation == "med" else float(aggregation[2:-1])
        return float(entry.get_response_time_percentile(pct / 100.0))

    def totals(self) -> dict[str, Any]:
        entry = self.http_entry()
        return {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "p50_ms": self.value("http_req_duration", "med", {}),
            "p95_ms": self.value("http_req_duration", "p(95)", {}),
            "p99_ms": self.value("http_req_duration", "p(99)", {}),
            "rps": self.value("http_reqs", "rate", {}),
        }
