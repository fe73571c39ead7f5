"""Small synchronous Kafka helpers for tests (each call runs its own event loop)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


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
