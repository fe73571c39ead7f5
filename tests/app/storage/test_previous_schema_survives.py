"""On real PostgreSQL, each migration keeps the schema the previous release ran on: nothing it read goes
away or changes type, nothing it wrote becomes mandatory. Complements the textual rule
(test_expand_only.py) with what the database itself reports after each migration."""

from __future__ import annotations

from typing import Any

import pytest
from immune_core.settings import Settings
from immune_core.storage.factory import open_database
from immune_core.storage.migrations import load_migrations

pytestmark = pytest.mark.integration

Columns = dict[tuple[str, str], dict[str, Any]]


async def _columns(conn: Any) -> Columns:
    rows = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
    )
    return {(str(r["table_name"]), str(r["column_name"])): dict(r) for r in rows}


def _breaks_previous_release(before: Columns, after: Columns) -> list[str]:
    """What the previous release (which knew `before`) would trip over on `after`."""
    problems = []
    for key, old in before.items():
        new = after.get(key)
        if new is None:
            problems.append(f"{key} is gone")
        elif new["data_type"] != old["data_type"]:
            problems.append(f"{key} changed type {old['data_type']} -> {new['data_type']}")
        elif old["is_nullable"] == "YES" and new["is_nullable"] == "NO" and new["column_default"] is None:
            problems.append(f"{key} became NOT NULL without a default")
    old_tables = {table for table, _ in before}
    for (table, column), new in after.items():
        added_to_old_table = table in old_tables and (table, column) not in before
        if added_to_old_table and new["is_nullable"] == "NO" and new["column_default"] is None:
            problems.append(f"{(table, column)} added NOT NULL without a default: old INSERTs fail")
    return problems


async def test_every_migration_keeps_the_previous_schema_usable(pg_schema_url: str) -> None:
    database = open_database(Settings(database_url=pg_schema_url))
    await database.connect()
    try:
        migrations = load_migrations("postgres")
        assert len(migrations) > 1
        async with database.transaction() as conn:
            for statement in migrations[0].statements():
                await conn.execute(statement)
            before = await _columns(conn)
        assert before  # no data must not pass
        for migration in migrations[1:]:
            async with database.transaction() as conn:
                for statement in migration.statements():
                    await conn.execute(statement)
                after = await _columns(conn)
            assert _breaks_previous_release(before, after) == [], f"{migration.version}_{migration.name}"
            before = after
    finally:
        await database.close()


def test_the_comparison_catches_contract_changes() -> None:
    column = {"data_type": "text", "is_nullable": "YES", "column_default": None}
    before: Columns = {("events", "payload"): column}
    assert _breaks_previous_release(before, {}) == ["('events', 'payload') is gone"]
    retyped = {("events", "payload"): {**column, "data_type": "bytea"}}
    assert "changed type" in _breaks_previous_release(before, retyped)[0]
    tightened = {("events", "payload"): {**column, "is_nullable": "NO"}}
    assert "NOT NULL" in _breaks_previous_release(before, tightened)[0]
    mandatory = {**before, ("events", "tenant"): {**column, "is_nullable": "NO"}}
    assert "old INSERTs fail" in _breaks_previous_release(before, mandatory)[0]
    defaulted = {**before, ("events", "tenant"): {**column, "is_nullable": "NO", "column_default": "'x'"}}
    new_table = {**before, ("leases2", "name"): {**column, "is_nullable": "NO"}}
    assert _breaks_previous_release(before, defaulted) == _breaks_previous_release(before, new_table) == []
