"""PostgreSQL through an asyncpg pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from immune_core.storage.database import Connection, Row, StoreUnavailable

# SQLSTATE classes that mean "the server is not there", not "your statement is wrong".
_UNAVAILABLE_CLASSES = ("08", "57", "53")


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _UNAVAILABLE_CLASSES
    return False


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag, e.g. "INSERT 0 3" or "UPDATE 1".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PgConnection(Connection):
    def __init__(self, conn: asyncpg.Connection, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._conn.execute(sql, *args, timeout=self._timeout))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows, timeout=self._timeout)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(sql, *args, timeout=self._timeout)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row = await self._conn.fetchrow(sql, *args, timeout=self._timeout)
        return dict(row) if row is not None else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *args, timeout=self._timeout)


class PostgresDatabase:
    dialect = "postgres"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    share_lock = " FOR SHARE"
    lock_table = "LOCK TABLE {table} IN EXCLUSIVE MODE"
    now_sql = "extract(epoch from clock_timestamp())::double precision"

    def __init__(self, dsn: str, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def connect(self) -> None:
        await self._ensure_pool()

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    # min_size=0: the pool opens connections on demand, so a database that is down
                    # at start-up does not keep the process from starting (ready stays false).
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._pool_size,
                        timeout=self._timeout,
                        command_timeout=self._timeout,
                        max_inactive_connection_lifetime=60.0,
                    )
                except Exception as exc:
                    if _is_unavailable(exc):
                        raise StoreUnavailable("database unreachable") from exc
                    raise
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=self._timeout)
            except (TimeoutError, OSError):
                pool.terminate()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Connection]:
        pool = await self._ensure_pool()
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                yield _PgConnection(conn, self._timeout)
        except Exception as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable("database unreachable") from exc
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        pool = await self._ensure_pool()
        try:
            async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                yield _PgConnection(conn, self._timeout)
        except Exception as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable("database unreachable") from exc
            raise

    @asynccontextmanager
    async def advisory_lock(self, key: int) -> AsyncIterator[None]:
        # Held on its own pooled connection; the guarded work runs on other connections.
        async with self.session() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", key)
            try:
                yield None
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def ping(self) -> bool:
        try:
            async with self.session() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except (StoreUnavailable, OSError, asyncpg.PostgresError):
            return False
