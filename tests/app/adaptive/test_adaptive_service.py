"""The adaptive layer in the service, on both stores (SQLite and the real PostgreSQL).

Memory detectors are stored with the batch that learned them and loaded by every replica; proposed
responses are put to the validator (or the safe default) and only allowed ones are published on
``immunis.responses.proposed``, denied ones recorded with the reason; clonal expansions are published on
``immunis.cloning.expanded``; a message on a cytokine topic that is not a cytokine is dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from immune_core.adaptive import queries as adaptive_queries
from immune_core.adaptive.recall import MemoryRecall, RecalledDetector, RecallQuery
from immune_core.adaptive.state import CLONING_EXPANDED_TOPIC, ClonalExpansion
from immune_core.cells.cytokine import Cytokine
from immune_core.detection.engine import CellSpec
from immune_core.events.models import TOPIC_BY_KIND
from immune_core.lymphnodes.cytokines import CytokineTally, run_cytokine_feed
from immune_core.observability.metrics import Metrics
from immune_core.processing.commit import ProcessedBatch, commit_batch
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.engine_host import EngineHost
from immune_core.responses.proposals import ResponseProposed
from immune_core.responses.validation import (
    RESPONSES_PROPOSED_TOPIC,
    ActionValidator,
    ProposedAction,
    ValidationVerdict,
)
from immune_core.settings import Settings
from immune_core.storage.database import Database
from immune_core.transport.bus import InboundMessage, OutboundMessage
from immune_core.transport.inprocess import InProcessBus

from tests.app.adaptive.consumers import detection_consumer, engine_host, vertical_scan

FLOWS = TOPIC_BY_KIND["network_flow"]
ADAPTIVE = ("neutrophil", "macrophage", "nk_cell", "dendritic", "helper_t", "b_cell", "cytotoxic_t")
SCANNER = "45.133.7.10"


class Denying:
    name = "ethical-test"

    def __init__(self) -> None:
        self.asked: list[ProposedAction] = []

    async def validate(self, action: ProposedAction) -> ValidationVerdict:
        self.asked.append(action)
        return ValidationVerdict(
            action_id=action.action_id, decision="deny", reason="blocking shared NAT", validator=self.name
        )


def _host(database: Database) -> EngineHost:
    return engine_host(database, [CellSpec(type=name) for name in ADAPTIVE])


def _consumer(database: Database, host: EngineHost, validator: ActionValidator | None) -> DetectionConsumer:
    return detection_consumer(database, host, validator=validator)


def _vertical_scan(start: datetime, ports: int = 40) -> list[InboundMessage]:
    """A fast scan of one host: the neutrophil finds it (il8), the helper T licenses, B cells learn."""
    events = vertical_scan(SCANNER, start, ports)
    return [InboundMessage(FLOWS, 0, offset, None, json.dumps(e).encode()) for offset, e in enumerate(events)]


async def _rows(database: Database, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with database.session() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def test_memory_learned_in_one_replica_is_stored_and_loaded_by_another(database: Database) -> None:
    host = _host(database)
    await _consumer(database, host, None).handle(_vertical_scan(datetime.now(UTC) - timedelta(minutes=5)))
    [stored] = await _rows(
        database, "SELECT detector_id, space, category, radius, deleted FROM memory_detectors"
    )
    assert stored["space"] == "source_ip" and stored["category"] == "port_scan" and not stored["deleted"]
    expansions = await _rows(database, "SELECT payload FROM outbox WHERE topic = $1", CLONING_EXPANDED_TOPIC)
    assert expansions
    first = ClonalExpansion.model_validate_json(expansions[0]["payload"])
    assert first.kind == "primary" and first.detector_id == stored["detector_id"] and first.antigen == SCANNER

    other = _host(database)  # another replica, or this one after a restart
    assert await other.sync_memory() == 1
    [loaded] = other.template.memory_detectors()
    assert loaded.detector_id == stored["detector_id"] and loaded.radius == pytest.approx(stored["radius"])
    assert await other.sync_memory() <= 1  # the overlap window may re-read it; nothing new

    async with database.transaction() as conn:
        await adaptive_queries.delete_detectors(conn, [stored["detector_id"]])
    await other.sync_memory()
    assert other.template.memory_detectors() == []  # deleted by tolerance elsewhere: dropped here too


async def test_allowed_actions_are_published_and_every_decision_is_recorded(database: Database) -> None:
    host = _host(database)
    await _consumer(database, host, None).handle(_vertical_scan(datetime.now(UTC) - timedelta(minutes=5)))
    [decision] = await _rows(
        database, "SELECT kind, target, critical, decision, validator FROM response_actions"
    )
    # No validator configured: blocking an external address is allowed by the documented default.
    assert decision == {
        "kind": "block_source",
        "target": SCANNER,
        "critical": decision["critical"],
        "decision": "allow",
        "validator": "default-policy",
    }
    assert not decision["critical"]
    [published] = await _rows(
        database, "SELECT payload FROM outbox WHERE topic = $1", RESPONSES_PROPOSED_TOPIC
    )
    message = ResponseProposed.model_validate_json(published["payload"])
    assert message.action.target == SCANNER and message.verdict.allowed


async def test_denied_actions_are_recorded_with_the_reason_and_not_published(database: Database) -> None:
    host = _host(database)
    validator = Denying()
    consumer = _consumer(database, host, validator)
    messages = _vertical_scan(datetime.now(UTC) - timedelta(minutes=5))
    await consumer.handle(messages)
    [decision] = await _rows(database, "SELECT decision, reason, validator FROM response_actions")
    assert decision == {"decision": "deny", "reason": "blocking shared NAT", "validator": "ethical-test"}
    assert await _rows(database, "SELECT id FROM outbox WHERE topic = $1", RESPONSES_PROPOSED_TOPIC) == []
    await consumer.handle(messages)  # re-read after a crash: processed already, the validator is not asked
    assert len(validator.asked) == 1


async def test_a_proposal_survives_a_failed_commit_without_asking_the_validator_twice(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _host(database)
    validator = Denying()
    consumer = _consumer(database, host, validator)
    real = commit_batch
    calls = {"n": 0}

    async def flaky(db: Database, batch: ProcessedBatch, source: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("commit lost")
        return await real(db, batch, source)

    from immune_core.processing import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "commit_batch", flaky)
    messages = _vertical_scan(datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(RuntimeError):
        await consumer.handle(messages)
    await consumer.handle(messages)
    assert len(validator.asked) == 1
    assert len(await _rows(database, "SELECT action_id FROM response_actions")) == 1


async def test_the_cytokine_feed_hands_cytokines_to_the_engines_and_dead_letters_garbage() -> None:
    bus = InProcessBus()
    await bus.start()
    received: list[Cytokine] = []
    letters: list[Any] = []

    async def dead_letter(letter: Any) -> None:
        letters.append(letter)

    feed = asyncio.create_task(
        run_cytokine_feed(bus, CytokineTally(Metrics()), on_read=received.extend, dead_letter=dead_letter)
    )
    await asyncio.sleep(0.2)  # subscribed (from the latest offset)
    il8 = Cytokine.emit(
        "il8", "neutrophil-1", "source_ip", SCANNER, datetime.now(UTC), {"category": "port_scan"}
    )
    await bus.publish(
        [
            OutboundMessage(il8.topic, SCANNER, il8.model_dump_json().encode()),
            OutboundMessage(il8.topic, SCANNER, b'{"not": "a cytokine"}'),
        ]
    )
    for _ in range(50):
        if received and letters:
            break
        await asyncio.sleep(0.1)
    feed.cancel()
    assert [c.cytokine_id for c in received] == [il8.cytokine_id]
    assert (
        letters and letters[0].reason_code == "invalid_event" and letters[0].raw == b'{"not": "a cytokine"}'
    )


def test_the_service_starts_with_the_adaptive_layer_unless_turned_off(make_settings: Any) -> None:
    from immune_core.runtime import Runtime

    innate = ["neutrophil", "macrophage", "nk_cell", "dendritic"]
    assert Settings.model_fields["adaptive_layer"].default is True  # on unless IMMUNE_ADAPTIVE_LAYER=false
    default = [c.cell_type for c in Runtime(make_settings()).engine.template.cells]
    assert default == [*innate, "helper_t", "regulatory_t", "b_cell", "cytotoxic_t"]
    off = Runtime(make_settings(adaptive_layer=False)).engine.template.cells
    assert [c.cell_type for c in off] == innate
    with pytest.raises(ValueError, match="max_cells"):
        Runtime(make_settings(max_cells=6))  # the caps must hold the eight default cells
    assert len(Runtime(make_settings(adaptive_layer=False, max_cells=6)).engine.template.cells) == 4


def test_the_environment_turns_the_adaptive_layer_off(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.delenv("IMMUNE_ADAPTIVE_LAYER", raising=False)
    assert Settings().adaptive_layer is True
    monkeypatch.setenv("IMMUNE_ADAPTIVE_LAYER", "false")
    assert Settings().adaptive_layer is False


async def test_the_threat_level_hormone_sets_every_engine_s_level(make_settings: Any) -> None:
    from immune_core.homeostasis.controller import THREAT_LEVEL_HORMONE
    from immune_core.runtime import Runtime

    runtime = Runtime(make_settings(adaptive_layer=True))
    lane = runtime.engine.engine_for("vertice.network.events/0")
    await runtime._on_hormone(THREAT_LEVEL_HORMONE, {"level": 3, "level_name": "critical"})
    assert lane.adaptive.threat_level == runtime.engine.template.adaptive.threat_level == 3
    await runtime._on_hormone(THREAT_LEVEL_HORMONE, {"level": 0})
    assert lane.adaptive.threat_level == 0


class PlatformMemory:
    """A MemoryRecall that knows one detector (the contract's own test server is the clients' business)."""

    name = "memory-test"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[RecallQuery] = []

    async def recall(self, query: RecallQuery) -> list[RecalledDetector]:
        self.asked.append(query)
        if self.fail:
            raise ConnectionError("memory service down")
        return [
            RecalledDetector(
                detector_id="platform-7",
                antigen_type=query.antigen_type,
                space=query.space,
                category="network_sweep",
                features=(0.7, 1.0, 1.0, 1.0, 0.0, 0.6),
                radius=0.2,
                stimulations=9,
            )
        ]


async def test_b_cell_recall_consults_the_external_memory_after_a_primary_response(
    database: Database,
) -> None:
    host = _host(database)
    memory = PlatformMemory()
    assert isinstance(memory, MemoryRecall)
    consumer = detection_consumer(database, host, memory_recall=memory)
    messages = _vertical_scan(datetime.now(UTC) - timedelta(minutes=5))
    await consumer.handle(messages)
    [query] = memory.asked
    assert query.antigen_type == "source_ip" and query.space == "source_ip" and len(query.features) == 6
    rows = await _rows(
        database, "SELECT detector_id, category, origin FROM memory_detectors ORDER BY detector_id"
    )
    assert {r["detector_id"] for r in rows} >= {"memory-test:platform-7"}
    engine = next(iter(host.engines.values()))
    assert "memory-test:platform-7" in {d.detector_id for d in engine.memory_detectors()}
    await consumer.handle(messages)  # re-read: processed already, the memory is not asked again
    assert len(memory.asked) == 1


async def test_recall_stays_local_when_the_external_memory_fails(database: Database) -> None:
    host = _host(database)
    memory = PlatformMemory(fail=True)
    consumer = detection_consumer(database, host, memory_recall=memory)
    await consumer.handle(_vertical_scan(datetime.now(UTC) - timedelta(minutes=5)))
    assert len(memory.asked) == 1
    [row] = await _rows(database, "SELECT category FROM memory_detectors")
    assert row["category"] == "port_scan"  # learned locally; nothing recalled, nothing lost
