"""Versioned SQL migrations (``sql/<dialect>/NNNN_name.sql``), applied in order, each once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

from immune_core.storage.database import Connection, Database

# Arbitrary constant: every replica takes the same advisory lock so only one migrates at a time.
_MIGRATION_LOCK_KEY = 0x1A1C0DE


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        # Our migration files hold plain DDL, one statement per ';' at the end of a line.
        parts = [part.strip() for part in self.sql.split(";\n")]
        return [
            p.rstrip(";") for p in parts if p and not all(line.startswith("--") for line in p.splitlines())
        ]


def load_migrations(dialect: str) -> list[Migration]:
    folder = resources.files("immune_core.storage").joinpath("sql", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in sql/{dialect}: {versions}")
    return found


async def _applied(conn: Connection) -> set[int]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )
    return {int(r["version"]) for r in await conn.fetch("SELECT version FROM schema_migrations")}


async def migrate(database: Database) -> list[int]:
    """Apply pending migrations; returns the versions applied now (empty when up to date)."""
    migrations = load_migrations(database.dialect)
    applied_now: list[int] = []
    async with database.advisory_lock(_MIGRATION_LOCK_KEY):
        async with database.transaction() as conn:
            done = await _applied(conn)
        for migration in migrations:
            if migration.version in done:
                continue
            async with database.transaction() as conn:
                for statement in migration.statements():
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    time.time(),
                )
            applied_now.append(migration.version)
    return applied_now
