"""Live threat intelligence, shared by every macrophage of an engine, with expiry by event time."""

from __future__ import annotations

import heapq
from datetime import datetime

from immune_core.events.models import IndicatorType, IntelItem


class IntelStore:
    """Indicators keyed by (type, canonical value); an expired item never matches.

    A newer item for the same indicator replaces the older one (feeds re-publish with new expiry).
    Expired items are evicted lazily through a heap ordered by expiry, so the store stays bounded by
    the number of live indicators (and ``max_items``, oldest expiry evicted first).
    """

    def __init__(self, max_items: int = 100_000) -> None:
        self._items: dict[tuple[IndicatorType, str], IntelItem] = {}
        self._expiry_heap: list[tuple[datetime, IndicatorType, str]] = []
        self._max_items = max_items

    def add(self, item: IntelItem, now: datetime) -> bool:
        """Store ``item``; returns False when it is already expired at ``now``."""
        if item.expires_at <= now:
            return False
        key = (item.indicator_type, item.indicator)
        current = self._items.get(key)
        is_older_copy = current is not None and current.timestamp > item.timestamp
        if current is not None and is_older_copy and current.expires_at >= item.expires_at:
            return True  # an out-of-order older copy must not shorten a newer item's life
        self._items[key] = item
        heapq.heappush(self._expiry_heap, (item.expires_at, item.indicator_type, item.indicator))
        self.evict_expired(now)
        while len(self._items) > self._max_items and self._expiry_heap:
            self._pop_earliest()
        return True

    def _pop_earliest(self) -> None:
        expires_at, kind, value = heapq.heappop(self._expiry_heap)
        current = self._items.get((kind, value))
        if current is not None and current.expires_at == expires_at:
            del self._items[(kind, value)]

    def evict_expired(self, now: datetime) -> None:
        while self._expiry_heap and self._expiry_heap[0][0] <= now:
            self._pop_earliest()

    def lookup(self, indicator_type: IndicatorType, value: str, now: datetime) -> IntelItem | None:
        item = self._items.get((indicator_type, value))
        if item is None or item.expires_at <= now:
            return None
        return item

    def live(self, now: datetime) -> list[IntelItem]:
        return sorted(
            (item for item in self._items.values() if item.expires_at > now),
            key=lambda item: (item.indicator_type, item.indicator),
        )

    def __len__(self) -> int:
        return len(self._items)
