"""What one relay publish costs: the outbox's Kafka transactions against plain idempotent sends.

Publishes ``--batches`` batches of ``--size`` messages (about the size of a threat) to a fresh topic,
once through ``KafkaBus.publish`` (one Kafka transaction per batch, as the outbox relay does) and once
through a plain idempotent producer (the relay before transactions), and prints messages per second
and per-batch latency percentiles for each. The topics are deleted afterwards.

    python bench/outbox_publish.py [--bootstrap 127.0.0.1:19092] [--batches 200] [--size 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from immune_core.transport.bus import OutboundMessage
from immune_core.transport.kafka import KafkaBus

PAYLOAD = b"x" * 700  # a stored threat's JSON is 600-800 bytes


async def _timed(batches: int, publish: Callable[[int], Awaitable[None]]) -> list[float]:
    took: list[float] = []
    for index in range(batches):
        start = time.perf_counter()
        await publish(index)
        took.append(time.perf_counter() - start)
    return took


def _report(name: str, size: int, took: list[float]) -> None:
    ordered = sorted(took)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[int(0.95 * (len(ordered) - 1))] * 1000
    rate = size * len(took) / sum(took)
    print(f"{name:<32} {rate:>10.0f} msg/s   batch p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")


async def main(bootstrap: str, batches: int, size: int) -> None:
    run = uuid.uuid4().hex[:8]
    topics = [f"bench-outbox-txn-{run}", f"bench-outbox-plain-{run}"]
    bus = KafkaBus(bootstrap, client_id=f"bench-outbox-{run}", partitions=3)
    await bus.ensure_topics(topics)
    await bus.start()
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await plain.start()
    try:

        async def transactional(index: int) -> None:
            await bus.publish([OutboundMessage(topics[0], f"k{index}-{i}", PAYLOAD) for i in range(size)])

        async def idempotent(index: int) -> None:
            futures = [
                await plain.send(topics[1], PAYLOAD, key=f"k{index}-{i}".encode()) for i in range(size)
            ]
            await asyncio.gather(*futures)

        await transactional(-1)  # warm both up (metadata, producer id)
        await idempotent(-1)
        _report("transactional (KafkaBus.publish)", size, await _timed(batches, transactional))
        _report("idempotent, no transaction", size, await _timed(batches, idempotent))
    finally:
        await plain.stop()
        await bus.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("IMMUNE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=200, help="messages per batch (IMMUNE_OUTBOX_BATCH_SIZE)")
    args = parser.parse_args()
    asyncio.run(main(args.bootstrap, args.batches, args.size))
