"""Writing a processed batch: events, their claim, threats, memory and outbox rows in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from immune_core.adaptive import queries as adaptive_queries
from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.adaptive.state import ClonalExpansion, SelfSample
from immune_core.cells.cytokine import Cytokine
from immune_core.detection.threat import Threat
from immune_core.events.models import EndpointEvent, IntelItem, NetworkFlow
from immune_core.processing.dlq import DeadLetter, insert_dead_letter
from immune_core.responses.proposals import Decision
from immune_core.storage import repository as repo
from immune_core.storage.database import Connection, Database

AnyEvent = NetworkFlow | EndpointEvent | IntelItem


@dataclass
class ProcessedBatch:
    """What detection concluded for a batch, before it is durable."""

    events: list[AnyEvent] = field(default_factory=list)
    # Detection ran for these (they were not processed before); threats per cause event.
    detected: dict[str, list[Threat]] = field(default_factory=dict)
    # Cytokines each detected event released (published only if this batch claims the event).
    cytokines: dict[str, list[Cytokine]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Input lane (topic/partition) each event was consumed from: it selects the detection engine.
    lanes: dict[str, str] = field(default_factory=dict)
    # Where each event came from (topic, partition, offset, bytes): a dead letter names it.
    origins: dict[str, DeadLetter] = field(default_factory=dict)
    # The adaptive layer's outputs per detected event (kept only if this batch claims the event):
    # validated response decisions, clonal expansions, memory detectors learned, detectors deleted,
    # self samples learned in a training window.
    decisions: dict[str, list[Decision]] = field(default_factory=dict)
    expansions: dict[str, list[ClonalExpansion]] = field(default_factory=dict)
    memory: dict[str, list[MemoryDetector]] = field(default_factory=dict)
    forgotten: dict[str, list[str]] = field(default_factory=dict)
    self_samples: dict[str, list[SelfSample]] = field(default_factory=dict)

    def only(self, event: AnyEvent) -> ProcessedBatch:
        """The part of this batch about one event (committing events one by one)."""
        event_id = event.event_key
        part = ProcessedBatch(events=[event], lanes={event_id: self.lanes.get(event_id, "")})
        if event_id in self.detected:
            part.detected[event_id] = self.detected[event_id]
            part.cytokines[event_id] = self.cytokines.get(event_id, [])
            for name in ("decisions", "expansions", "memory", "forgotten", "self_samples"):
                outputs = getattr(self, name)
                if event_id in outputs:
                    getattr(part, name)[event_id] = outputs[event_id]
        return part


@dataclass(frozen=True)
class CommitResult:
    new_event_ids: list[str]
    claimed: set[str]
    threats: list[Threat]


async def commit_batch(db: Database, batch: ProcessedBatch, source: str) -> CommitResult:
    async with db.transaction() as conn:
        new_ids = await repo.insert_events(conn, batch.events, source)
        # The offset commit that follows acknowledges them: counted with them (shared by the group).
        await repo.record_acknowledged(conn, "consumer-group", source, len(new_ids))
        # Claiming marks the events processed in the transaction that stores what detection concluded
        # from them: a batch re-read after a crash finds them processed and does not detect twice.
        claimed = await repo.claim_processed(conn, batch.detected.keys())
        stored: list[Threat] = []
        for event_id, threats in batch.detected.items():
            # Another replica may have processed this event during a rebalance: its outputs won.
            if event_id in claimed and threats:
                stored.extend(await repo.insert_threats(conn, event_id, threats))
        for letter in batch.dead_letters:
            await insert_dead_letter(conn, letter)
        messages = [repo.threat_message(t) for t in stored]
        for event_id in sorted(claimed):
            messages.extend(repo.cytokine_message(c) for c in batch.cytokines.get(event_id, []))
            messages.extend(await _adaptive_outputs(conn, batch, event_id))
        await repo.enqueue(conn, messages)
    return CommitResult(new_ids, claimed, stored)


async def _adaptive_outputs(
    conn: Connection, batch: ProcessedBatch, event_id: str
) -> list[repo.OutboxMessage]:
    """Store what the adaptive layer concluded from one claimed event; returns the messages to publish."""
    await adaptive_queries.upsert_detectors(conn, batch.memory.get(event_id, []))
    await adaptive_queries.delete_detectors(conn, batch.forgotten.get(event_id, []))
    await adaptive_queries.store_self_samples(conn, batch.self_samples.get(event_id, []))
    decisions = batch.decisions.get(event_id, [])
    await adaptive_queries.record_decisions(conn, decisions)
    messages = [repo.expansion_message(e) for e in batch.expansions.get(event_id, [])]
    # The core proposes, never executes: only actions the validator allowed leave the service.
    messages.extend(repo.response_message(d) for d in decisions if d.published)
    return messages


async def commit_side_threats(db: Database, threats: Sequence[Threat], cause_event_id: str) -> list[Threat]:
    """Threats raised outside the consumer group's claim (intel synced from the store); ids dedupe."""
    if not threats:
        return []
    async with db.transaction() as conn:
        stored = await repo.insert_threats(conn, cause_event_id, threats)
        await repo.enqueue(conn, [repo.threat_message(t) for t in stored])
    return stored
