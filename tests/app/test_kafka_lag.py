"""Consumer lag on the real (shared) broker: a transactional topic that went quiet has no lag.

Every transaction of the outbox's transactional producer ends with a commit marker (a control batch)
that takes an offset but is never returned as a record. Counting lag from the last record read left
a lag of one per partition for ever once the topic went quiet, and after `stall_after_s` the consumer
read as "stuck": /health/ready answered 503 on a healthy, idle replica (seen on the local cluster:
the only stable pod unready two minutes after a canary's load stopped, every request 503).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from immune_core.transport.bus import OutboundMessage
from immune_core.transport.kafka import KafkaBus

from tests.app.kafka_tools import delete_topic

pytestmark = [pytest.mark.integration]


def test_a_quiet_transactional_topic_read_and_committed_to_its_end_has_no_lag(kafka_bootstrap: str) -> None:
    topic = f"lag-test-{uuid.uuid4().hex[:12]}"
    try:
        lags = asyncio.run(_read_everything(kafka_bootstrap, topic))
    finally:
        delete_topic(kafka_bootstrap, topic)
    before, after = lags
    # Messages waiting are lag (the bad case): the five not read yet at least (markers still ahead of
    # a record not committed count too: they are not known to be only markers yet).
    assert before >= 5, before
    assert after == 0, "read and committed to the end: the markers after each transaction are not lag"


async def _read_everything(kafka_bootstrap: str, topic: str) -> tuple[int, int]:
    bus = KafkaBus(kafka_bootstrap, client_id=f"lag-test-{uuid.uuid4().hex[:8]}", partitions=1)
    await bus.ensure_topics([topic])
    await bus.start()
    consumer = bus.consumer([topic], group_id=f"lag-test-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        for batch in range(3):  # three transactions, three commit markers
            await bus.publish([OutboundMessage(topic, f"k{batch}-{i}", b"x") for i in range(2)])
        # Attach first (the group's position starts at the earliest offset), then hold back the reading:
        # poll once with nothing handled, to see the waiting messages as lag.
        read = await consumer.poll(1, timeout_s=5.0)
        deadline = asyncio.get_running_loop().time() + 30
        while not read and asyncio.get_running_loop().time() < deadline:
            read = await consumer.poll(1, timeout_s=1.0)
        before = sum(consumer.lag().values())
        total = list(read)
        while len(total) < 6 and asyncio.get_running_loop().time() < deadline:
            total += await consumer.poll(100, timeout_s=1.0)
        await consumer.commit(total)
        for _ in range(3):  # the fetcher steps over the trailing markers on the polls that find nothing
            await consumer.poll(100, timeout_s=1.0)
        return before, sum(consumer.lag().values())
    finally:
        await consumer.stop()
        await bus.stop()
