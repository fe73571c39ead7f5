"""Fan-out to subscribers with bounded queues: a subscriber that cannot keep up is dropped, and
publishing never waits for anyone (the service's pace is never set by its slowest client)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from immune_core.detection.threat import SEVERITY_RANK
from immune_core.observability.metrics import Metrics

STREAM_TYPES = ("threat", "alert")


@dataclass(frozen=True)
class StreamFilter:
    types: frozenset[str] = frozenset(STREAM_TYPES)
    min_severity: str | None = None
    categories: frozenset[str] = frozenset()
    antigen: str | None = None

    def matches(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind not in self.types:
            return False
        if kind != "threat":
            return True
        data = message.get("data", {})
        if self.min_severity is not None and SEVERITY_RANK.get(data.get("severity"), -1) < SEVERITY_RANK.get(
            self.min_severity,
            0,  # type: ignore[call-overload]
        ):
            return False
        if self.categories and data.get("category") not in self.categories:
            return False
        return self.antigen is None or data.get("antigen") == self.antigen


@dataclass(eq=False)
class Subscriber:
    filter: StreamFilter
    queue: asyncio.Queue[dict[str, Any]]
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


class StreamHub:
    def __init__(self, metrics: Metrics, queue_size: int) -> None:
        self._metrics = metrics
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self.published = 0
        # True once the feed reads the threat/alert topics: from then on nothing published is missed.
        self.live = False

    def subscribe(self, stream_filter: StreamFilter) -> Subscriber:
        subscriber = Subscriber(stream_filter, asyncio.Queue(maxsize=self._queue_size))
        self._subscribers.add(subscriber)
        self._metrics.ws_clients.set(len(self._subscribers))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        self._metrics.ws_clients.set(len(self._subscribers))

    def publish(self, message: dict[str, Any]) -> None:
        self.published += 1
        for subscriber in list(self._subscribers):
            if subscriber.dropped.is_set() or not subscriber.filter.matches(message):
                continue
            try:
                subscriber.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscriber.dropped.set()
                self.unsubscribe(subscriber)
                self._metrics.ws_dropped.inc()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
