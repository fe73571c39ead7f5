"""Acknowledged events are counted in the database, with the events: across replicas and restarts.

`GET /api/v1/stats` `events_acknowledged` is what the chaos gate compares with `events_stored` ("no
event lost"); it must add up over every replica sharing the database and survive a restart, which a
per-process counter (`events_accepted`) does not. Both backends: SQLite and the real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from immune_core.events.models import parse_event
from immune_core.settings import Settings
from immune_core.storage import repository as repo
from immune_core.storage.factory import open_database
from immune_core.storage.migrations import load_migrations, migrate

from tests.app.support import AUTH, flow, wait_for


def _stats(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/stats", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_acknowledgements_add_up_over_replicas_and_survive_a_restart(
    database_settings: Settings, start_client: Callable[[Settings], TestClient]
) -> None:
    a = start_client(database_settings)
    b = start_client(database_settings.model_copy(update={"instance_id": "test-b"}))
    shared = flow()
    assert (
        a.post("/api/v1/events", json={"events": [shared, flow(), flow()]}, headers=AUTH).status_code == 202
    )
    # A duplicate is answered 202 but was acknowledged already: counted once, database-wide.
    assert b.post("/api/v1/events", json={"events": [shared, flow()]}, headers=AUTH).status_code == 202
    from_a, from_b = _stats(a), _stats(b)
    assert (from_a["events_accepted"], from_b["events_accepted"]) == (3, 1)  # per process
    for stats in (from_a, from_b):
        assert stats["events_acknowledged"] == stats["events_stored"] == 4  # database-wide
    a.__exit__(None, None, None)
    restarted = start_client(database_settings)
    after = _stats(restarted)
    assert after["events_accepted"] == 0  # a new process: its own counter starts over
    assert after["events_acknowledged"] == after["events_stored"] == 4
    wait_for(lambda: _stats(restarted)["events_processed"] == 4, what="every stored event processed")


def test_a_rejected_batch_acknowledges_nothing(client: TestClient) -> None:
    bad = client.post("/api/v1/events", json={"events": [flow(), flow(dst_port=70000)]}, headers=AUTH)
    assert bad.status_code == 422
    stats = _stats(client)
    assert stats["events_acknowledged"] == stats["events_stored"] == 0


async def test_events_stored_before_the_table_existed_count_as_acknowledged(
    database_settings: Settings,
) -> None:
    """Migration 0002 starts the count from what is stored, so an upgraded database is consistent."""
    db = open_database(database_settings)
    await db.connect()
    try:
        [first, *_] = load_migrations(db.dialect)
        async with db.transaction() as conn:  # a database at version 1, as before this change
            for statement in first.statements():
                await conn.execute(statement)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            await conn.execute("INSERT INTO schema_migrations VALUES (1, 'initial', 0)")
            await repo.insert_events(conn, [parse_event(flow()) for _ in range(3)], "api")
            await repo.insert_events(conn, [parse_event(flow())], "kafka")
        assert 2 in await migrate(db)
        async with db.session() as conn:
            total = await conn.fetchval("SELECT SUM(acknowledged) FROM event_acknowledgements")
            assert int(total) == await conn.fetchval("SELECT count(*) FROM events") == 4
            # ... and from there on, acknowledgements add to it in the storing transaction.
        async with db.transaction() as conn:
            await repo.record_acknowledged(conn, "test-a", "api", 2)
            await repo.record_acknowledged(conn, "test-a", "api", 0)
        async with db.session() as conn:
            assert int(await conn.fetchval("SELECT SUM(acknowledged) FROM event_acknowledgements")) == 6
    finally:
        await db.close()


@pytest.mark.parametrize("count", [0, -1])
async def test_nothing_is_recorded_for_no_events(database_settings: Settings, count: int) -> None:
    db = open_database(database_settings)
    await db.connect()
    try:
        await migrate(db)
        async with db.transaction() as conn:
            await repo.record_acknowledged(conn, "test-a", "api", count)
        async with db.session() as conn:
            assert await conn.fetchval("SELECT count(*) FROM event_acknowledgements") == 0
    finally:
        await db.close()
