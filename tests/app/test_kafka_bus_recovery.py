"""The Kafka bus on the real (shared) broker: a producer whose publish failed is never used again.

A producer whose idempotent sequence broke (``OutOfOrderSequenceNumber`` after a broker restart with
sends in flight) fails every later send; the bus must close it and publish through a new one, whose
transactional id fences the old producer's open transaction (nothing of the failed attempt is ever
read by a ``read_committed`` consumer).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber
from immune_core.transport.bus import BusUnavailable, OutboundMessage
from immune_core.transport.kafka import KafkaBus

from tests.app.kafka_tools import delete_topic, read_committed_to_end

pytestmark = [pytest.mark.integration]


def test_a_producer_whose_sequence_broke_is_replaced_and_its_attempt_never_seen(kafka_bootstrap: str) -> None:
    topic = f"recovery-test-{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_publish_through_a_broken_producer(kafka_bootstrap, topic))
        seen = read_committed_to_end(kafka_bootstrap, topic)
    finally:
        delete_topic(kafka_bootstrap, topic)  # the broker is shared: leave nothing behind
    assert seen == [b"first", b"second", b"third"], "the failed attempt is aborted, the retry published once"


async def _publish_through_a_broken_producer(kafka_bootstrap: str, topic: str) -> None:
    bus = KafkaBus(kafka_bootstrap, client_id=f"recovery-test-{uuid.uuid4().hex[:8]}", partitions=1)
    await bus.ensure_topics([topic])
    await bus.start()
    try:
        await bus.publish([OutboundMessage(topic, "k", b"first")])
        broken: Any = bus._producer  # the test breaks the very producer the bus holds
        real_send = broken.send
        sends = 0

        async def send_then_break(*args: Any, **kwargs: Any) -> Any:
            nonlocal sends
            sends += 1
            if sends == 2:  # the first message of the attempt goes out, the second finds the sequence broken
                raise OutOfOrderSequenceNumber()
            return await real_send(*args, **kwargs)

        broken.send = send_then_break
        with pytest.raises(BusUnavailable, match="OutOfOrderSequenceNumber"):
            await bus.publish(
                [OutboundMessage(topic, "k", b"lost-1"), OutboundMessage(topic, "k", b"lost-2")]
            )
        assert bus._producer is None and bus.producers_replaced == 1

        await bus.publish([OutboundMessage(topic, "k", b"second"), OutboundMessage(topic, "k", b"third")])
        assert bus._producer is not broken
    finally:
        await bus.stop()
