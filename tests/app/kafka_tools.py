"""Small synchronous Kafka helpers for tests (each call runs its own event loop)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(run())


def read_until(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 90.0
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``done(messages)``; messages are decoded JSON."""

    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # the outbox publishes in Kafka transactions
        )
        await consumer.start()
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    seen.extend(json.loads(r.value) for r in records)
                if done(seen):
                    return seen
        finally:
            await consumer.stop()
        raise AssertionError(f"{topic}: condition not met after {timeout_s}s ({len(seen)} messages)")

    return asyncio.run(run())


def read_committed_to_end(bootstrap: str, topic: str) -> list[bytes]:
    """Every committed message of ``topic`` from the beginning to its current end (read_committed)."""

    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
            if not partitions:
                await consumer._client.force_metadata_update()  # first look at the topic
                partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)  # the last stable offset under read_committed
            values: list[bytes] = []
            deadline = time.monotonic() + 120

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in partitions])

            while await behind():
                assert time.monotonic() < deadline, "topic not read to its end in 120 s"
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    values.extend(r.value or b"" for r in records)
            return values
        finally:
            await consumer.stop()

    return asyncio.run(run())


def delete_topic(bootstrap: str, topic: str) -> None:
    """Delete `topic` (the broker is shared: a test leaves nothing behind)."""

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()

    asyncio.run(delete())
