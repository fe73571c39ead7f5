"""SQLite through one aiosqlite connection (embedded mode: one process owns the file)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from immune_core.storage.database import Connection, Row, StoreUnavailable

_PLACEHOLDER = re.compile(r"\$(\d+)")


def _translate(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


class _SqliteConnection(Connection):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self._conn.execute(_translate(sql), args)
        try:
            return cursor.rowcount
        finally:
            await cursor.close()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(_translate(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._conn.execute(_translate(sql), args) as cursor:
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return next(iter(row.values())) if row else None


class SqliteDatabase:
    dialect = "sqlite"
    skip_locked = ""
    share_lock = ""
    lock_table = ""
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    idle_in_transaction_limit = ""  # one process owns the file (embedded mode)

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: aiosqlite.Connection | None = None
        # One connection, so statements from concurrent tasks must not interleave inside a transaction.
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        if self._conn is not None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self._path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged event survives a power cut, not just a process crash.
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA foreign_keys=ON")
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable("database not open")
        return self._conn

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Connection]:
        async with self._lock:
            try:
                yield _SqliteConnection(self._connection())
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._lock:
            conn = self._connection()
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
            try:
                yield _SqliteConnection(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    @asynccontextmanager
    async def advisory_lock(self, key: int) -> AsyncIterator[None]:
        # One process owns an embedded database file: nothing to serialise against.
        yield None

    async def ping(self) -> bool:
        try:
            async with self.session() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except (StoreUnavailable, sqlite3.Error):
            return False
