"""An in-process bus for embedded mode: append-only logs per topic with per-group offsets."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from immune_core.transport.bus import BusConsumer, InboundMessage, OutboundMessage

# Oldest messages are dropped past this many per topic; a consumer that far behind skips ahead.
_RETENTION = 100_000


@dataclass
class _Log:
    messages: list[InboundMessage] = field(default_factory=list)
    base_offset: int = 0

    @property
    def end_offset(self) -> int:
        return self.base_offset + len(self.messages)

    def append(self, message: OutboundMessage) -> None:
        key = message.key.encode() if message.key is not None else None
        self.messages.append(InboundMessage(message.topic, 0, self.end_offset, key, message.value))
        if len(self.messages) > _RETENTION:
            drop = len(self.messages) - _RETENTION
            del self.messages[:drop]
            self.base_offset += drop

    def read(self, offset: int, limit: int) -> list[InboundMessage]:
        start = max(offset, self.base_offset) - self.base_offset
        return self.messages[start : start + limit]


class InProcessBus:
    def __init__(self) -> None:
        self._logs: dict[str, _Log] = defaultdict(_Log)
        self._committed: dict[tuple[str, str], int] = {}
        self._arrived = asyncio.Condition()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def healthy(self) -> bool:
        return True

    def partition_for(self, key: str) -> int:
        return 0  # one partition per topic

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        for message in messages:
            self._logs[message.topic].append(message)
        async with self._arrived:
            self._arrived.notify_all()

    def consumer(
        self, topics: Sequence[str], *, group_id: str | None, from_latest: bool = False
    ) -> BusConsumer:
        return _InProcessConsumer(self, tuple(topics), group_id, from_latest)

    # The consumer's view of the logs.
    def _log(self, topic: str) -> _Log:
        return self._logs[topic]

    def _committed_offset(self, group_id: str, topic: str) -> int | None:
        return self._committed.get((group_id, topic))

    def _commit(self, group_id: str, topic: str, offset: int) -> None:
        self._committed[(group_id, topic)] = max(offset, self._committed.get((group_id, topic), 0))


class _InProcessConsumer:
    def __init__(
        self, bus: InProcessBus, topics: tuple[str, ...], group_id: str | None, latest: bool
    ) -> None:
        self._bus = bus
        self._topics = topics
        self._group_id = group_id
        self._latest = latest
        self._positions: dict[str, int] = {}

    async def start(self) -> None:
        for topic in self._topics:
            committed = self._bus._committed_offset(self._group_id, topic) if self._group_id else None
            if committed is not None:
                self._positions[topic] = committed
            else:
                log = self._bus._log(topic)
                self._positions[topic] = log.end_offset if self._latest else log.base_offset

    async def stop(self) -> None:
        return None

    def _take(self, max_records: int) -> list[InboundMessage]:
        batch: list[InboundMessage] = []
        for topic in self._topics:
            if len(batch) >= max_records:
                break
            got = self._bus._log(topic).read(self._positions[topic], max_records - len(batch))
            if got:
                self._positions[topic] = got[-1].offset + 1
                batch.extend(got)
        return batch

    async def poll(self, max_records: int, timeout_s: float) -> list[InboundMessage]:
        # Check under the condition's lock: publish appends before notifying under it, so no wake-up is lost.
        async with self._bus._arrived:
            batch = self._take(max_records)
            if batch:
                return batch
            try:
                await asyncio.wait_for(self._bus._arrived.wait(), timeout_s)
            except TimeoutError:
                return []
        return self._take(max_records)

    async def commit(self, messages: Sequence[InboundMessage]) -> None:
        if self._group_id is None:
            return
        for message in messages:
            self._bus._commit(self._group_id, message.topic, message.offset + 1)

    async def attached(self) -> bool:
        return bool(self._positions)

    def lag(self) -> dict[str, int]:
        return {t: self._bus._log(t).end_offset - self._positions.get(t, 0) for t in self._topics}
