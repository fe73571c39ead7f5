"""The consumer group over the input topics: store, detect, commit — then acknowledge to Kafka.

The Kafka offset is committed only after the batch (events and everything detection concluded from
them) is durable. A message that is not a valid event goes to ``immunis.dlq`` with the reason; nothing
a producer sends can stop the loop. When the database is down the batch is held and retried with the
same detection results (re-running detection would double-count in the engine's windows).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from immune_core.events.models import (
    KIND_BY_TOPIC,
    TOPIC_BY_KIND,
    EventValidationError,
    IntelItem,
    parse_event,
)
from immune_core.ingestion.repository import processed_among
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.processing.commit import CommitResult, DeadLetter, ProcessedBatch, commit_batch
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.processing.retry import retry_while_store_down
from immune_core.storage.database import Database
from immune_core.transport.bus import Bus, InboundMessage

log = get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
INPUT_TOPICS: tuple[str, ...] = tuple(TOPIC_BY_KIND.values())
_RAW_LIMIT = 8192  # bytes of a poison message kept in the DLQ (enough to debug, bounded)


def _raw_text(value: bytes) -> str:
    return value[:_RAW_LIMIT].decode("utf-8", errors="replace")


class DetectionConsumer:
    def __init__(
        self,
        *,
        database: Database,
        bus: Bus,
        engine: EngineHost,
        metrics: Metrics,
        counters: IntakeCounters,
        group_id: str,
        batch_size: int,
    ) -> None:
        self._db = database
        self._bus = bus
        self._engine = engine
        self._metrics = metrics
        self._counters = counters
        self._group_id = group_id
        self._batch_size = batch_size

    async def run(self) -> None:
        consumer = self._bus.consumer(INPUT_TOPICS, group_id=self._group_id)
        await consumer.start()
        try:
            while True:
                messages = await consumer.poll(self._batch_size, timeout_s=1.0)
                for topic, lag in consumer.lag().items():
                    self._metrics.consumer_lag.labels(topic=topic).set(lag)
                if not messages:
                    continue
                await self.handle(messages)
                await consumer.commit(messages)
        finally:
            await consumer.stop()

    async def handle(self, messages: list[InboundMessage]) -> CommitResult:
        batch = self._decode(messages)
        already_done = await self._retry(self._processed_among, [str(e.event_id) for e in batch.events])
        # Partitions interleave arbitrarily; event-time order within the batch keeps the cells' windows
        # closer to what happened (the engine's clock is the latest timestamp it has seen).
        for event in sorted(batch.events, key=lambda e: e.timestamp):
            event_id = str(event.event_id)
            if event_id in already_done or event_id in batch.detected:
                continue
            if isinstance(event, IntelItem):
                batch.detected[event_id] = self._engine.learn_intel(event)
            else:
                batch.detected[event_id] = self._engine.process(event, batch.lanes[event_id])
        batch.cytokines = self._engine.drain_cytokines()
        result = await self._retry(commit_batch, self._db, batch, "kafka")
        self._account(batch, result)
        return result

    def _decode(self, messages: list[InboundMessage]) -> ProcessedBatch:
        batch = ProcessedBatch()
        seen: set[str] = set()
        for message in messages:
            try:
                event = parse_event(message.value)
            except EventValidationError as exc:
                batch.dead_letters.append(self._dead_letter(message, exc.message))
                continue
            expected = KIND_BY_TOPIC.get(message.topic)
            if expected is not None and event.kind != expected:
                reason = f"event kind {event.kind!r} does not belong on topic {message.topic!r}"
                batch.dead_letters.append(self._dead_letter(message, reason))
                continue
            if str(event.event_id) in seen:
                continue
            seen.add(str(event.event_id))
            batch.events.append(event)
            batch.lanes[str(event.event_id)] = EngineHost.lane(message.topic, message.partition)
        return batch

    def _dead_letter(self, message: InboundMessage, reason: str) -> DeadLetter:
        label = "kind_mismatch" if reason.startswith("event kind") else "invalid_event"
        self._metrics.dlq.labels(reason=label).inc()
        log.warning("poison_message", topic=message.topic, partition=message.partition, offset=message.offset)
        return DeadLetter(message.topic, message.partition, message.offset, reason, _raw_text(message.value))

    async def _processed_among(self, event_ids: list[str]) -> set[str]:
        async with self._db.session() as conn:
            return await processed_among(conn, event_ids)

    async def _retry(self, call: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        return await retry_while_store_down(call, *args, **kwargs)

    def _account(self, batch: ProcessedBatch, result: CommitResult) -> None:
        new = set(result.new_event_ids)
        for event in batch.events:
            outcome = "stored" if str(event.event_id) in new else "duplicate"
            self._metrics.events.labels(kind=event.kind, outcome=outcome, source="kafka").inc()
        self._counters.accepted += len(new)
        self._counters.dead_lettered += len(batch.dead_letters)
        for threat in result.threats:
            self._metrics.threats.labels(severity=threat.severity).inc()
