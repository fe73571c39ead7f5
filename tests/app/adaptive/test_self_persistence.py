"""Regulatory T tolerance survives a restart: self samples are stored with their batch and loaded at start.

On both stores (SQLite, the embedded mode; the real PostgreSQL in its own schema). A replica learns a
workstation's normal behaviour (unsigned tools started by explorer.exe) as self in its training window;
after a restart, a memory detector that reacts to that behaviour is censored before its first match,
and the training window goes on where it was instead of reopening (which would learn whatever runs right
after the restart -- an attack included -- as self). A stored row that is not a self sample is refused
with its reason and the others still load.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from immune_core.adaptive import queries as adaptive_queries
from immune_core.detection.engine import CellSpec
from immune_core.events.models import TOPIC_BY_KIND, EndpointEvent, parse_event
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.engine_host import EngineHost
from immune_core.simulator.records import EventFactory
from immune_core.storage.database import Database
from immune_core.transport.bus import InboundMessage

from tests.app.adaptive.consumers import detection_consumer, engine_host
from tests.app.cells.adaptive_support import detector

ENDPOINTS = TOPIC_BY_KIND["endpoint"]
TRAINING_S = 600
# Event time of the first run; the restart's events come an hour later (the window is long over).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
_make = EventFactory(random.Random(11))


def _host(database: Database) -> EngineHost:
    cells = [
        CellSpec(type="regulatory_t", params={"training_s": TRAINING_S}),
        CellSpec(type="b_cell"),
    ]
    return engine_host(database, cells)


def _consumer(database: Database, host: EngineHost) -> DetectionConsumer:
    return detection_consumer(database, host)


def _start(seconds: float, process: str, signed: bool, parent: str = "explorer.exe") -> EndpointEvent:
    event = parse_event(
        _make.endpoint(
            T0 + timedelta(seconds=seconds),
            process=process,
            signed=signed,
            host_id="ws-01",
            parent_process=parent,
            user="alice",
            action="process_start",
        )
    )
    assert isinstance(event, EndpointEvent)
    return event


def _workstation(start_s: float) -> list[EndpointEvent]:
    """Ten minutes of a workstation that runs an unsigned portable tool from explorer.exe now and then."""
    return [
        _start(
            start_s + index * 10.0,
            "portable-tool.exe" if index % 4 == 0 else f"app{index % 7}.exe",
            signed=index % 4 != 0,
        )
        for index in range(60)
    ]


def _messages(events: list[EndpointEvent], first_offset: int) -> list[InboundMessage]:
    return [
        InboundMessage(ENDPOINTS, 0, first_offset + n, None, e.model_dump_json().encode())
        for n, e in enumerate(events)
    ]


async def _rows(database: Database, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with database.session() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def _learn_self_then_store_a_self_reactive_detector(database: Database) -> None:
    await _consumer(database, _host(database)).handle(_messages(_workstation(0.0), 0))
    # Learned later elsewhere (another replica, the Memory service): "unsigned, started by explorer".
    async with database.transaction() as conn:
        await adaptive_queries.upsert_detectors(
            conn, [detector("process", [1.0, 0.0, 0.0, 0.0, 0.0], "unsigned_process")]
        )


async def test_learned_self_survives_a_restart_and_keeps_a_self_reactive_detector_suppressed(
    database: Database,
) -> None:
    await _learn_self_then_store_a_self_reactive_detector(database)
    stored = await _rows(database, "SELECT space, vector, training_started_at FROM self_samples")
    assert stored and {r["space"] for r in stored} == {"process"}
    assert {r["training_started_at"] for r in stored} == {T0.timestamp()}

    restarted = _host(database)
    await restarted.warm_up(window_s=0, max_events=0)  # what the service does at start
    engine = restarted.template
    assert sum(len(s) for s in engine.adaptive.self_sets.values()) == len(stored)
    assert engine.adaptive.first_seen == T0  # the window goes on from where it started

    # An hour later: the tool runs again, and something new starts from a macro (not self).
    after = [*_workstation(3600.0), _start(4300.0, "dropper.exe", signed=False, parent="winword.exe")]
    consumer = _consumer(database, restarted)
    await consumer.handle(_messages(after, 1000))
    threats = await _rows(database, "SELECT antigen FROM threats")
    assert not [t for t in threats if "portable-tool" in str(t["antigen"])]  # still tolerated
    [deleted] = await _rows(database, "SELECT detector_id, deleted FROM memory_detectors")
    assert deleted["deleted"]  # censored against the loaded self before its first match
    # The window was not reopened by the restart: nothing after it was learned as self.
    assert len(await _rows(database, "SELECT vector FROM self_samples")) == len(stored)


async def test_without_the_stored_self_a_restart_reacts_to_self_and_relearns(database: Database) -> None:
    """The bad case: the same restart with the self samples gone behaves as before this change."""
    await _learn_self_then_store_a_self_reactive_detector(database)
    async with database.transaction() as conn:
        await conn.execute("DELETE FROM self_samples")
    restarted = _host(database)
    await restarted.warm_up(window_s=0, max_events=0)
    assert restarted.template.adaptive.first_seen is None
    macro_first = [_start(3600.0, "dropper.exe", signed=False, parent="winword.exe")]
    await _consumer(database, restarted).handle(_messages(macro_first, 1000))
    # A new window opened at the first event after the restart: the macro's child is now "self".
    relearned = await _rows(database, "SELECT vector, training_started_at FROM self_samples")
    assert relearned and {r["training_started_at"] for r in relearned} == {
        (T0 + timedelta(hours=1)).timestamp()
    }


async def test_a_corrupt_or_foreign_self_row_is_refused_and_the_rest_still_load(database: Database) -> None:
    good = json.dumps([1.0, 0.0, 0.0, 0.0, 0.0])
    rows = [
        ("process", good, T0.timestamp()),
        ("dns_tunnel", good, T0.timestamp()),  # a space this release does not know (a newer release's)
        ("process", "{not json", T0.timestamp()),
        ("process", json.dumps([1.0, 0.0]), T0.timestamp()),  # wrong width
        ("process", json.dumps([1.7, 0.0, 0.0, 0.0, 0.0]), T0.timestamp()),  # out of [0, 1]
        ("source_ip", json.dumps([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), -5.0),  # no time
        ("upload", json.dumps(["x", 0, 0]), T0.timestamp()),
    ]
    async with database.transaction() as conn:
        for index, (space, vector, started) in enumerate(rows):
            await conn.execute(
                "INSERT INTO self_samples (space, vector, training_started_at, stored_at)"
                " VALUES ($1, $2, $3, $4)",
                space,
                vector,
                started,
                T0.timestamp() + index,  # loaded in this order
            )
    host = _host(database)
    assert await host.sync_self() == 1
    assert len(host.template.adaptive.self_sets["process"]) == 1
    assert host.template.adaptive.first_seen == T0
    reasons = host.self_refused
    assert len(reasons) == 6
    assert "unknown feature space 'dns_tunnel'" in reasons[0]
    assert "not JSON" in reasons[1]
    assert "not a list of 5 features" in reasons[2]
    assert "not a number in [0, 1]" in reasons[3] and "not a number in [0, 1]" in reasons[5]
    assert "training start is not a time" in reasons[4]
    assert host._metrics.registry.get_sample_value("immune_self_samples_refused_total") == 6
    await host.sync_self()  # the sync re-reads its last seconds: the same bad rows are not refused twice
    assert (
        len(host.self_refused) == 6
        and host._metrics.registry.get_sample_value("immune_self_samples_refused_total") == 6
    )


def test_the_running_service_keeps_tolerance_across_a_restart(
    database_settings: Any, start_client: Any
) -> None:
    """The whole service on each store: self learned through the API is back after a restart."""
    from tests.app.support import AUTH, wait_for

    events = [json.loads(e.model_dump_json()) for e in _workstation(0.0)]
    first = start_client(database_settings)
    response = first.post("/api/v1/events", json={"events": events}, headers=AUTH)
    assert response.status_code == 202, response.text
    runtime = first.app.state.runtime
    wait_for(
        lambda: (
            sum(e.counters["events"] for e in runtime.engine.engines.values()) == len(events)
            and runtime.engine.uncommitted == 0
        ),
        what="every event detected and its batch committed",
    )
    learned = sum(len(s) for e in runtime.engine.engines.values() for s in e.adaptive.self_sets.values())
    assert learned > 0
    first.__exit__(None, None, None)  # stopped: every batch committed, self samples with it

    restarted = start_client(database_settings).app.state.runtime
    template = restarted.engine.template.adaptive
    assert sum(len(s) for s in template.self_sets.values()) == learned
    assert template.first_seen == T0
