"""Every replica reads the threat and alert topics in full (no group) and pushes them to its clients."""

from __future__ import annotations

import asyncio
import json

from immune_core.observability.logging import get_logger
from immune_core.storage.repository import ALERTS_TOPIC, THREATS_TOPIC
from immune_core.stream.hub import StreamHub
from immune_core.transport.bus import Bus

log = get_logger(__name__)
_TYPE_BY_TOPIC = {THREATS_TOPIC: "threat", ALERTS_TOPIC: "alert"}


async def run_stream_feed(bus: Bus, hub: StreamHub) -> None:
    consumer = bus.consumer(tuple(_TYPE_BY_TOPIC), group_id=None, from_latest=True)
    await consumer.start()
    try:
        while True:  # the broker may be down at start-up: keep trying to attach
            if await consumer.attached():
                break
            await asyncio.sleep(0.5)
        hub.live = True
        while True:
            for message in await consumer.poll(500, timeout_s=1.0):
                try:
                    data = json.loads(message.value)
                except ValueError:
                    log.warning("stream_message_unreadable", topic=message.topic, offset=message.offset)
                    continue
                hub.publish({"type": _TYPE_BY_TOPIC[message.topic], "data": data})
    finally:
        hub.live = False
        await consumer.stop()
