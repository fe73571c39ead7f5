"""PostgreSQL through an asyncpg pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from immune_core.storage.database import Connection, Row, StoreUnavailable

# SQLSTATE classes that mean "the server is not there (or not now)", not "your statement is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown, cannot connect
# now), 58 system error (I/O). PostgreSQL error codes appendix:
# https://www.postgresql.org/docs/current/errcodes-appendix.html
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
# Client-side failures of a connection or the pool, by class, whatever the message: a socket error, a
# timeout, the pool or connection closed under us (InterfaceError and its subclasses), and a protocol left
# mid-operation by a connection that died (InternalClientError "cannot switch to state N; another
# operation is in progress", seen on BEGIN while the server restarts).
_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) means "the database cannot be reached".

    Judged by exception class and SQLSTATE class, never by message text, so every variant of an outage
    maps to ``StoreUnavailable`` (HTTP 503 + Retry-After) rather than to a 500.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (StoreUnavailable, *_UNAVAILABLE_TYPES)):
            return True
        if isinstance(current, asyncpg.PostgresError):
            state = getattr(current, "sqlstate", None) or ""
            if state[:2] in _UNAVAILABLE_CLASSES:
                return True
        current = current.__cause__ or current.__context__
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
    # https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-IDLE-IN-TRANSACTION-SESSION-TIMEOUT
    idle_in_transaction_limit = "SET LOCAL idle_in_transaction_session_timeout = {ms}"

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
                    if is_unavailable(exc):
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
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        pool = await self._ensure_pool()
        try:
            conn = await pool.acquire(timeout=self._timeout)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable("database unreachable") from exc
            raise
        broken = False
        try:
            yield conn
        except Exception as exc:
            broken = is_unavailable(exc)
            if broken:
                raise StoreUnavailable("database unreachable") from exc
            raise
        finally:
            if broken:
                # A connection that failed mid-operation may be left in a protocol state no later
                # operation can leave ("another operation is in progress"): drop it, never reuse it.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
            try:
                await pool.release(conn, timeout=self._timeout)
            except Exception as exc:  # releasing a dead connection: the pool replaces it
                if not is_unavailable(exc):
                    raise

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Connection]:
        async with self._acquire() as conn:
            yield _PgConnection(conn, self._timeout)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._acquire() as conn:
            try:
                transaction = conn.transaction()
                await transaction.start()
            except Exception as exc:
                if is_unavailable(exc):  # _acquire drops the connection
                    raise StoreUnavailable("database unreachable") from exc
                raise
            try:
                yield _PgConnection(conn, self._timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(transaction.rollback(), self._timeout)
                raise
            await transaction.commit()

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
        except Exception as exc:  # a probe answers false for any failure to answer
            if is_unavailable(exc) or isinstance(exc, asyncpg.PostgresError):
                return False
            raise
