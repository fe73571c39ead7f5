"""Writing a processed batch: events, their claim, threats, memory and outbox rows in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from immune_core.cells.cytokine import Cytokine
from immune_core.detection.threat import Threat
from immune_core.events.models import EndpointEvent, IntelItem, NetworkFlow
from immune_core.ingestion import repository as repo
from immune_core.storage.database import Database

AnyEvent = NetworkFlow | EndpointEvent | IntelItem


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int | None
    offset: int | None
    reason: str
    raw: str


@dataclass
class ProcessedBatch:
    """What detection concluded for a batch, before it is durable."""

    events: list[AnyEvent] = field(default_factory=list)
    # Detection ran for these (they were not processed before); threats per cause event.
    detected: dict[str, list[Threat]] = field(default_factory=dict)
    cytokines: list[Cytokine] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Input lane (topic/partition) each event was consumed from: it selects the detection engine.
    lanes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommitResult:
    new_event_ids: list[str]
    claimed: set[str]
    threats: list[Threat]


async def commit_batch(db: Database, batch: ProcessedBatch, source: str) -> CommitResult:
    async with db.transaction() as conn:
        new_ids = await repo.insert_events(conn, batch.events, source)
        claimed = await repo.claim_processed(conn, batch.detected.keys())
        stored: list[Threat] = []
        for event_id, threats in batch.detected.items():
            # Another replica may have processed this event during a rebalance: its outputs won.
            if event_id in claimed and threats:
                stored.extend(await repo.insert_threats(conn, event_id, threats))
        for letter in batch.dead_letters:
            await repo.insert_dead_letter(
                conn, letter.topic, letter.partition, letter.offset, letter.reason, letter.raw
            )
        messages = [repo.threat_message(t) for t in stored]
        if claimed:
            messages.extend(repo.cytokine_message(c) for c in batch.cytokines)
        await repo.enqueue(conn, messages)
    return CommitResult(new_ids, claimed, stored)


async def commit_side_threats(db: Database, threats: Sequence[Threat], cause_event_id: str) -> list[Threat]:
    """Threats raised outside the consumer group's claim (intel synced from the store); ids dedupe."""
    if not threats:
        return []
    async with db.transaction() as conn:
        stored = await repo.insert_threats(conn, cause_event_id, threats)
        await repo.enqueue(conn, [repo.threat_message(t) for t in stored])
    return stored
