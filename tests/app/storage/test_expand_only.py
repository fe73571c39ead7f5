"""Every migration after the first only expands the schema, so the previous release runs on the newest one."""

from __future__ import annotations

import pytest
from immune_core.storage.expand_only import contract_steps
from immune_core.storage.migrations import Migration, load_migrations


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_shipped_migrations_after_the_first_only_expand(dialect: str) -> None:
    migrations = load_migrations(dialect)
    assert len(migrations) > 1  # no data must not pass: the rule has migrations to check
    for migration in migrations[1:]:
        assert contract_steps(migration.statements()) == [], f"{dialect}/{migration.version}_{migration.name}"


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE leases", "drops"),
        ("ALTER TABLE events DROP COLUMN forwarded_at", "drops"),
        ("ALTER TABLE events RENAME COLUMN payload TO body", "renames"),
        ("ALTER TABLE events RENAME TO events_v2", "renames"),
        ("ALTER TABLE events ALTER COLUMN payload TYPE BYTEA", "type"),
        ("ALTER TABLE events ALTER COLUMN forwarded_at SET NOT NULL", "NOT NULL"),
        ("ALTER TABLE events ADD COLUMN tenant TEXT NOT NULL", "without a DEFAULT"),
        ("ALTER TABLE events ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL -- later\n", "without a DEFAULT"),
        ("TRUNCATE dead_letters", "empties"),
        ("ALTER TABLE dead_letters ALTER COLUMN reason_code DROP DEFAULT", "drops"),
    ],
)
def test_contract_steps_are_rejected(sql: str, reason: str) -> None:
    problems = contract_steps(Migration(9, "bad", sql + ";\n").statements())
    assert len(problems) == 1 and reason in problems[0]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE IF NOT EXISTS deployment (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE events ADD COLUMN forwarded_to TEXT",
        "CREATE INDEX IF NOT EXISTS events_tenant ON events (tenant)",
        "ALTER TABLE events ALTER COLUMN forwarded_at DROP NOT NULL",
        "DROP INDEX IF EXISTS events_tenant",
    ],
)
def test_expand_steps_pass(sql: str) -> None:
    assert contract_steps(Migration(9, "good", sql + ";\n").statements()) == []
