"""A lease in the database with a fencing token that grows by one at every change of holder.

The database's own clock decides expiry, so replicas with skewed clocks still agree. Singleton work
runs inside ``fenced(...)``: the transaction re-reads the lease row (shared lock, so a takeover waits for
it) and refuses to write when the caller's token is no longer the current one — a paused old leader that
wakes up after a new one was elected cannot act.

A paused (SIGSTOP, frozen VM) holder caught inside such a transaction would keep its row lock, and with it
every takeover, until it wakes. Each lease transaction therefore asks the server to end its session once
the client stays quiet mid-transaction for ``hold_limit_s`` (PostgreSQL's
``idle_in_transaction_session_timeout``): the lock goes, the stale writes roll back, a successor is
elected when the lease expires.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from immune_core.storage.database import Connection, Database

LEADER_LEASE = "leader"


class StaleFencingToken(RuntimeError):
    """A singleton write carried a token older than the lease's current one."""


@dataclass(frozen=True)
class LeaseState:
    name: str
    holder: str
    token: int
    expires_in_s: float


class DatabaseLease:
    def __init__(self, database: Database, name: str = LEADER_LEASE, *, hold_limit_s: float = 2.5) -> None:
        """``hold_limit_s``: seconds a lease transaction may sit idle before the server ends it (keep it
        under the TTL, so a paused holder never delays a takeover past the lease's expiry)."""
        self._db = database
        self.name = name
        self._hold_limit_ms = max(1, round(hold_limit_s * 1000))

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._db.transaction() as conn:
            if self._db.idle_in_transaction_limit:
                await conn.execute(self._db.idle_in_transaction_limit.format(ms=self._hold_limit_ms))
            yield conn

    async def acquire(self, holder: str, ttl_s: float) -> int | None:
        """Take or renew the lease; returns the fencing token held, or ``None`` when another holds it."""
        now = self._db.now_sql
        sql = f"""
            INSERT INTO leases (name, holder, token, expires_at, acquired_at)
            VALUES ($1, $2, 1, {now} + $3, {now})
            ON CONFLICT (name) DO UPDATE SET
                token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {now}
                             THEN leases.token ELSE leases.token + 1 END,
                acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {now}
                                   THEN leases.acquired_at ELSE excluded.acquired_at END,
                holder = excluded.holder,
                expires_at = excluded.expires_at
            WHERE leases.holder = excluded.holder OR leases.expires_at <= {now}
            RETURNING token
        """  # noqa: S608  # nosec B608 - only dialect constants are interpolated
        async with self._transaction() as conn:
            token = await conn.fetchval(sql, self.name, holder, float(ttl_s))
        return int(token) if token is not None else None

    async def release(self, holder: str) -> None:
        """Let the lease expire now so a successor need not wait out the TTL (token is kept)."""
        async with self._transaction() as conn:
            await conn.execute(
                f"UPDATE leases SET expires_at = {self._db.now_sql} WHERE name = $1 AND holder = $2",  # noqa: S608  # nosec B608 - only dialect constants are interpolated
                self.name,
                holder,
            )

    async def current(self) -> LeaseState | None:
        async with self._db.session() as conn:
            row = await conn.fetchrow(
                f"SELECT holder, token, expires_at - {self._db.now_sql} AS remaining"  # noqa: S608  # nosec B608
                " FROM leases WHERE name = $1",
                self.name,
            )
        if row is None:
            return None
        return LeaseState(self.name, str(row["holder"]), int(row["token"]), float(row["remaining"]))

    @asynccontextmanager
    async def fenced(self, token: int) -> AsyncIterator[Connection]:
        """A transaction that commits only if ``token`` is still the lease's current token."""
        async with self._transaction() as conn:
            current = await conn.fetchval(
                f"SELECT token FROM leases WHERE name = $1{self._db.share_lock}",  # noqa: S608  # nosec B608
                self.name,
            )
            if current is None or int(current) != token:
                raise StaleFencingToken(f"token {token} is stale (current {current})")
            yield conn
