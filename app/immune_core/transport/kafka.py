"""Kafka through aiokafka: an idempotent producer and consumers that survive broker outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from immune_core.observability.logging import get_logger
from immune_core.transport.bus import BusConsumer, BusUnavailable, InboundMessage, OutboundMessage

log = get_logger(__name__)
_SEND_TIMEOUT_S = 10.0
# A known position answers at once; bounded so an unknown one (a reset pending) never holds a poll up.
_POSITION_TIMEOUT_S = 0.5
# A replica that dies mid-transaction blocks read_committed readers of its partitions until this passes
# (or until it restarts and fences its old transaction): short, but well above one publish.
_TRANSACTION_TIMEOUT_MS = 30_000


class KafkaBus:
    """Publishes through one transactional producer per replica and hands out consumers.

    Every ``publish`` is one Kafka transaction (all of the batch or none of it, for ``read_committed``
    readers). Any failure replaces the producer: a new producer with the same ``transactional.id``
    bumps the epoch, which fences the old one and aborts its open transaction, so nothing a failed
    producer still holds can be delivered later, and a producer whose idempotent sequence broke
    (``OutOfOrderSequenceNumber`` after a broker restart with sends in flight) is never reused.
    Kafka's exactly-once design: KIP-98, https://cwiki.apache.org/confluence/x/ASD8Aw
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        partitions: int = 3,
        replication_factor: int = 1,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._partitions = partitions
        self._replication = replication_factor
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._publish_lock = asyncio.Lock()
        self._known_topics: set[str] = set()
        # Producers being shut down in the background (a stop can wait on a dead broker).
        self._retiring: set[asyncio.Task[None]] = set()
        self.producers_replaced = 0

    async def start(self) -> None:
        # Best effort: a broker that is down at start-up is retried on the first publish.
        try:
            await self._ensure_producer()
        except BusUnavailable:
            log.warning("kafka_unavailable_at_start")

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), _SEND_TIMEOUT_S)
        for task in list(self._retiring):
            task.cancel()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=True,
                    # Stable per replica: a restarted replica fences what its predecessor left open.
                    transactional_id=f"{self._client_id}-outbox",
                    transaction_timeout_ms=_TRANSACTION_TIMEOUT_MS,
                    request_timeout_ms=int(_SEND_TIMEOUT_S * 1000),
                    linger_ms=2,
                )
                try:
                    await asyncio.wait_for(producer.start(), _SEND_TIMEOUT_S)
                except (KafkaError, OSError, TimeoutError) as exc:
                    self._retire(producer)
                    raise BusUnavailable(f"kafka producer cannot start: {type(exc).__name__}") from exc
                self._producer = producer
            return self._producer

    def _retire(self, producer: AIOKafkaProducer) -> None:
        """Shut ``producer`` down without waiting for it (its broker may be gone)."""

        async def stop() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), _SEND_TIMEOUT_S * 3)

        task = asyncio.create_task(stop(), name="kafka-producer-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _replace_producer(self, broken: AIOKafkaProducer, reason: str) -> None:
        async with self._lock:
            if self._producer is broken:
                self._producer = None
                self.producers_replaced += 1
                log.warning("kafka_producer_replaced", reason=reason)
                self._retire(broken)

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with the configured partition count (idempotent)."""
        wanted = [t for t in topics if t not in self._known_topics]
        if not wanted:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=f"{self._client_id}-admin")
        try:
            await asyncio.wait_for(admin.start(), _SEND_TIMEOUT_S)
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(t, num_partitions=self._partitions, replication_factor=self._replication)
                        for t in missing
                    ]
                )
                log.info("kafka_topics_created", topics=missing)
            self._known_topics.update(wanted)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"kafka admin: {type(exc).__name__}") from exc
        finally:
            await admin.close()

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        async with self._publish_lock:  # a producer has at most one open transaction
            producer = await self._ensure_producer()
            try:
                await asyncio.wait_for(self._in_transaction(producer, messages), _SEND_TIMEOUT_S * 2)
            except (KafkaError, OSError, TimeoutError) as exc:
                # Whatever the error, the producer's state (transaction, sequence numbers) is suspect.
                await self._replace_producer(producer, type(exc).__name__)
                raise BusUnavailable(f"kafka publish failed: {type(exc).__name__}") from exc

    @staticmethod
    async def _in_transaction(producer: AIOKafkaProducer, messages: Sequence[OutboundMessage]) -> None:
        await producer.begin_transaction()
        try:
            futures = [
                await producer.send(m.topic, m.value, key=m.key.encode() if m.key is not None else None)
                for m in messages
            ]
            await asyncio.gather(*futures)
        except BaseException:
            # Best effort; a producer that cannot abort is replaced, and its successor fences it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), _SEND_TIMEOUT_S)
            raise
        await producer.commit_transaction()

    async def healthy(self) -> bool:
        producer = self._producer
        if producer is None:
            try:
                producer = await self._ensure_producer()
            except BusUnavailable:
                return False
        try:
            # Metadata for any topic proves a broker answers right now.
            client: Any = producer.client
            return bool(await asyncio.wait_for(client.fetch_all_metadata(), 3.0))
        except Exception:  # a probe: any failure (also of a producer being replaced meanwhile) is "down"
            return False

    def partition_for(self, key: str) -> int:
        # Kafka's default partitioner (murmur2 of the key), with the partition count topics are created with.
        return int(murmur2(key.encode()) & 0x7FFFFFFF) % self._partitions

    def consumer(
        self, topics: Sequence[str], *, group_id: str | None, from_latest: bool = False
    ) -> BusConsumer:
        return KafkaConsumer(self._bootstrap, tuple(topics), group_id, from_latest, self._client_id)


class KafkaConsumer:
    def __init__(
        self, bootstrap: str, topics: tuple[str, ...], group_id: str | None, latest: bool, client_id: str
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._group_id = group_id
        self._latest = latest
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._next_offset: dict[TopicPartition, int] = {}
        # The group's committed position per partition: lag counts from here, so messages fetched but
        # not yet durably processed (a batch that keeps failing) still count as lag.
        self._committed: dict[TopicPartition, int] = {}
        # Where the consumer will fetch next per partition, read after each poll. It runs ahead of the
        # last record by the transaction markers (control batches) the fetcher skipped: every
        # transaction of the outbox's transactional producer ends with one, which takes an offset.
        self._fetch_position: dict[TopicPartition, int] = {}
        self._asked: set[TopicPartition] = set()

    async def start(self) -> None:
        return None  # connects on first poll, so a broker outage at start-up never blocks the service

    async def _ensure(self) -> AIOKafkaConsumer | None:
        if self._consumer is not None:
            return self._consumer
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest" if self._latest else "earliest",
            isolation_level="read_committed",
            session_timeout_ms=10_000,
            # Notice new topics and partitions within seconds, not the default five minutes.
            metadata_max_age_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        try:
            await asyncio.wait_for(consumer.start(), _SEND_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            await consumer.stop()
            log.warning("kafka_consumer_start_failed", topics=list(self._topics), error=type(exc).__name__)
            return None
        self._consumer = consumer
        return consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def poll(self, max_records: int, timeout_s: float) -> list[InboundMessage]:
        consumer = await self._ensure()
        if consumer is None:
            await asyncio.sleep(timeout_s)
            return []
        try:
            batches = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            log.warning("kafka_poll_failed", error=type(exc).__name__)
            await asyncio.sleep(timeout_s)
            return []
        await self._learn_committed(consumer)
        if not any(batches.values()):
            # Only a quiet poll can leave markers alone between the last record and the fetch position
            # (lag() uses them only once everything read is committed): nothing added to a busy poll.
            await self._learn_fetch_positions(consumer)
        received: list[InboundMessage] = []
        for tp, records in batches.items():
            if records:
                self._next_offset[tp] = records[-1].offset + 1
            received.extend(
                InboundMessage(r.topic, r.partition, r.offset, r.key, r.value or b"") for r in records
            )
        return received

    async def commit(self, messages: Sequence[InboundMessage]) -> None:
        if self._group_id is None or self._consumer is None or not messages:
            return
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        try:
            await self._consumer.commit(offsets)
            self._committed.update(offsets)
        except KafkaError as exc:
            # A rebalance moved the partition: the new owner re-reads these (ingestion is idempotent).
            log.warning("kafka_commit_failed", error=type(exc).__name__)

    async def _learn_committed(self, consumer: AIOKafkaConsumer) -> None:
        if self._group_id is None:
            return
        assigned = consumer.assignment()
        for tp in [tp for tp in self._committed if tp not in assigned]:
            del self._committed[tp]  # moved to another replica: its position here would go stale
        self._asked &= assigned
        for tp in assigned:
            if tp in self._asked:
                continue
            try:
                committed = await asyncio.wait_for(consumer.committed(tp), _SEND_TIMEOUT_S)
            except (KafkaError, TimeoutError):
                continue  # broker busy or away: learnt on a later poll
            self._asked.add(tp)
            if committed is not None:
                self._committed.setdefault(tp, committed)

    async def _learn_fetch_positions(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        self._fetch_position = {tp: p for tp, p in self._fetch_position.items() if tp in assigned}
        for tp in assigned:
            if tp not in self._next_offset and tp not in self._committed:
                continue  # no position of ours yet: asking could wait for a reset on the broker
            try:
                self._fetch_position[tp] = await asyncio.wait_for(consumer.position(tp), _POSITION_TIMEOUT_S)
            except (KafkaError, TimeoutError):
                continue  # kept from the last poll; learnt again on the next

    async def attached(self) -> bool:
        consumer = await self._ensure()
        if consumer is None or not consumer.assignment():
            return False
        try:
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolves "latest"/"earliest" to a concrete offset now
        except KafkaError:
            return False
        return True

    def lag(self) -> dict[str, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self._committed.get(tp, self._next_offset.get(tp))
            if highwater is None or position is None:
                continue
            fetched = self._fetch_position.get(tp)
            if fetched is not None and position >= self._next_offset.get(tp, position):
                # Every record read is committed, so what lies between it and the fetch position are
                # transaction markers, not messages: without this a transactional topic shows a lag of
                # one per partition for ever once it goes quiet (and the consumer looks stuck).
                position = max(position, fetched)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - position)
        return lag
