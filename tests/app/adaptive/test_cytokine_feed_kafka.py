"""Cytokines written are read: over the real Kafka, the feed hands live cytokines to the engines'
adaptive cells (which activate and recruit on them) and dead-letters what is not a cytokine."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from immune_core.cells.cytokine import Cytokine, cytokine_topic
from immune_core.lymphnodes.cytokines import CYTOKINE_TOPICS, CytokineTally, run_cytokine_feed
from immune_core.observability.metrics import Metrics
from immune_core.processing.dlq import DeadLetter
from immune_core.transport.bus import OutboundMessage
from immune_core.transport.kafka import KafkaBus


async def _feed_over_kafka(bootstrap: str) -> tuple[list[Cytokine], list[DeadLetter], Cytokine, bytes]:
    bus = KafkaBus(bootstrap, client_id=f"cytokine-feed-test-{uuid.uuid4().hex[:8]}", partitions=1)
    await bus.start()
    await bus.ensure_topics(CYTOKINE_TOPICS)
    received: list[Cytokine] = []
    letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        letters.append(letter)

    feed = asyncio.create_task(
        run_cytokine_feed(bus, CytokineTally(Metrics()), on_read=received.extend, dead_letter=dead_letter)
    )
    # The broker is shared: our messages are marked, and resent until the feed (reading from the latest
    # offset once it is assigned) has seen them.
    marker = uuid.uuid4().hex
    garbage = f'{{"not": "a cytokine", "marker": "{marker}"}}'.encode()
    ours: Cytokine | None = None
    try:
        for _ in range(40):
            ours = Cytokine.emit(
                "il8",
                f"neutrophil-{marker}",
                "source_ip",
                "45.133.7.10",
                datetime.now(UTC),
                {"category": "port_scan"},
            )
            topic = cytokine_topic("il8")
            await bus.publish(
                [
                    OutboundMessage(topic, ours.antigen, ours.model_dump_json().encode()),
                    OutboundMessage(topic, "garbage", garbage),
                ]
            )
            await asyncio.sleep(1.5)
            got = any(c.source_cell == f"neutrophil-{marker}" for c in received)
            if got and any(letter.raw == garbage for letter in letters):
                break
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        await bus.stop()
    assert ours is not None
    return received, letters, ours, garbage


def test_the_feed_reads_cytokines_from_kafka_and_dead_letters_garbage(kafka_bootstrap: str) -> None:
    received, letters, ours, garbage = asyncio.run(_feed_over_kafka(kafka_bootstrap))
    mine: list[Any] = [c for c in received if c.source_cell == ours.source_cell]
    assert mine and all(c.type == "il8" and c.payload == {"category": "port_scan"} for c in mine)
    [letter, *_] = [letter for letter in letters if letter.raw == garbage]
    assert letter.reason_code == "invalid_event" and letter.topic == "immunis.cytokines.il8"
    assert "not a valid cytokine" in letter.detail
