"""What the rest of the service knows about the message bus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class BusUnavailable(RuntimeError):
    """The broker cannot take messages now; the outbox keeps them until it can."""


@dataclass(frozen=True)
class OutboundMessage:
    topic: str
    key: str | None
    value: bytes


@dataclass(frozen=True)
class InboundMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class BusConsumer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def poll(self, max_records: int, timeout_s: float) -> list[InboundMessage]:
        """Next messages (possibly none after ``timeout_s``); never raises for a broker outage."""

    async def commit(self, messages: Sequence[InboundMessage]) -> None:
        """Mark ``messages`` (and everything before them in their partitions) as done."""

    def lag(self) -> dict[str, int]:
        """Messages behind the end of each topic, as far as the consumer knows."""

    async def attached(self) -> bool:
        """Connected, assigned and positioned: messages published from now on will be read."""


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Deliver all ``messages`` durably or raise ``BusUnavailable``."""

    def consumer(
        self, topics: Sequence[str], *, group_id: str | None, from_latest: bool = False
    ) -> BusConsumer:
        """``group_id`` shares the topics' partitions among replicas; ``None`` reads everything
        (broadcast, e.g. WebSocket fan-out) without committing."""

    async def healthy(self) -> bool: ...

    def partition_for(self, key: str) -> int:
        """The input partition a message with ``key`` is written to (replay routes by it)."""
