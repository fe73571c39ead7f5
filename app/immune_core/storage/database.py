"""The narrow database interface the store is written against.

SQL is written once, PostgreSQL style (``$1`` placeholders, ``ON CONFLICT``, ``RETURNING``); the SQLite
adapter rewrites placeholders to SQLite's numbered ``?1`` form. Anything dialect-specific beyond that is
a property of the adapter (``skip_locked``), so callers never branch on the backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]


class StoreUnavailable(RuntimeError):
    """The database cannot be reached; callers answer 503 and acknowledge nothing."""


class Connection(Protocol):
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it touched."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


class Database(Protocol):
    dialect: str
    # Appended to SELECTs that claim rows for work; empty where the backend has one writer anyway.
    skip_locked: str
    # Appended to a SELECT of a row that a concurrent writer must wait for (fencing checks).
    share_lock: str
    # Statement that serialises writers of a table until commit ("{table}" is substituted); empty where
    # transactions are serial anyway.
    lock_table: str
    # SQL expression for the database's own clock in epoch seconds: leases compare against one clock.
    now_sql: str
    # Statement run first in a transaction that holds a lock others wait for: the server ends the session
    # when its client goes quiet mid-transaction for longer than "{ms}" milliseconds (a paused process must
    # not hold the lock for ever). Empty where no other process waits on this one.
    idle_in_transaction_limit: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Connection]: ...

    def session(self) -> AbstractAsyncContextManager[Connection]:
        """A connection in autocommit mode (reads, single statements)."""

    async def ping(self) -> bool: ...

    def advisory_lock(self, key: int) -> AbstractAsyncContextManager[None]:
        """Serialise work (migrations) across processes sharing the database."""
