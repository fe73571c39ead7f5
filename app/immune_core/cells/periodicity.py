"""Beacon tracking for the NK cell: periodic, low-variance connections from a host to one destination.

Malware command-and-control "beacons": it calls home at a fixed period (with little jitter) and sends
little. Per (host, destination, port) the tracker keeps the last ``history`` connection times and
small-flow sizes; the pair is beaconing when at least ``min_events`` connections show a mean interval
inside [``min_period_s``, ``max_period_s``] and a coefficient of variation (std / mean of the
intervals) at most ``max_cv``, with a median upstream size at most ``max_bytes``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from immune_core.cells.baseline import coefficient_of_variation


@dataclass(frozen=True, slots=True)
class BeaconVerdict:
    host_id: str
    dst_ip: str
    dst_port: int
    connections: int
    period_s: float
    cv: float
    event_ids: tuple[UUID, ...]


@dataclass(slots=True)
class _Series:
    times: deque[datetime]
    sizes: deque[int]
    event_ids: deque[UUID]
    last_reported: datetime | None = None


@dataclass(slots=True)
class BeaconTracker:
    history: int
    min_events: int
    min_period_s: float
    max_period_s: float
    max_cv: float
    max_bytes: int
    max_pairs: int
    _series: OrderedDict[tuple[str, str, int], _Series] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._series)

    def observe(
        self, host_id: str, dst_ip: str, dst_port: int, at: datetime, bytes_out: int, event_id: UUID
    ) -> BeaconVerdict | None:
        self._forget_idle(at)
        key = (host_id, dst_ip, dst_port)
        series = self._series.get(key)
        if series is None:
            limit = self.history
            series = _Series(deque(maxlen=limit), deque(maxlen=limit), deque(maxlen=limit))
            self._series[key] = series
        else:
            self._series.move_to_end(key)
        if series.times and at <= series.times[-1]:
            return None  # duplicate or out-of-order delivery says nothing about the period
        series.times.append(at)
        series.sizes.append(bytes_out)
        series.event_ids.append(event_id)
        return self._judge(key, series)

    def _forget_idle(self, now: datetime) -> None:
        # A pair silent for two maximal periods cannot be part of a beacon any more.
        idle_horizon = now - timedelta(seconds=2 * self.max_period_s)
        while self._series:
            oldest = next(iter(self._series.values()))
            if len(self._series) <= self.max_pairs and oldest.times and oldest.times[-1] >= idle_horizon:
                break
            self._series.popitem(last=False)

    def _judge(self, key: tuple[str, str, int], series: _Series) -> BeaconVerdict | None:
        if len(series.times) < self.min_events:
            return None
        times = list(series.times)
        intervals = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
        period, cv = coefficient_of_variation(intervals)
        median_size = sorted(series.sizes)[len(series.sizes) // 2]
        if not (self.min_period_s <= period <= self.max_period_s and cv <= self.max_cv):
            return None
        if median_size > self.max_bytes:
            return None
        now = times[-1]
        reported = series.last_reported
        if reported is not None and (now - reported).total_seconds() < period * len(times):
            return None  # this run of beacons was already reported
        series.last_reported = now
        host_id, dst_ip, dst_port = key
        return BeaconVerdict(host_id, dst_ip, dst_port, len(times), period, cv, tuple(series.event_ids))
