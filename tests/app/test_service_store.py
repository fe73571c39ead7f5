"""Storage, lease/fencing and outbox behaviour on both backends (SQLite, and the real PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest
from immune_core.coordination.lease import DatabaseLease, StaleFencingToken
from immune_core.events.models import parse_event
from immune_core.observability.metrics import Metrics
from immune_core.outbox.relay import OutboxRelay
from immune_core.storage import repository as repo
from immune_core.storage.database import Database
from immune_core.storage.migrations import load_migrations, migrate
from immune_core.transport.bus import BusUnavailable, OutboundMessage
from immune_core.transport.inprocess import InProcessBus

from tests.app.support import flow


def test_migration_files_exist_for_both_dialects_with_the_same_versions() -> None:
    postgres = [m.version for m in load_migrations("postgres")]
    sqlite = [m.version for m in load_migrations("sqlite")]
    assert postgres == sqlite and postgres[0] == 1
    assert all(m.statements() for m in load_migrations("postgres"))


async def test_migrations_are_idempotent(database: Database) -> None:
    assert await migrate(database) == []
    async with database.session() as conn:
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    assert applied == len(load_migrations(database.dialect))


async def test_events_are_stored_once_per_event_id(database: Database) -> None:
    event = parse_event(flow())
    async with database.transaction() as conn:
        assert await repo.insert_events(conn, [event], "api") == [str(event.event_id)]
    async with database.transaction() as conn:
        assert await repo.insert_events(conn, [event], "kafka") == []
        assert await repo.claim_processed(conn, [str(event.event_id)]) == {str(event.event_id)}
        assert await repo.claim_processed(conn, [str(event.event_id)]) == set()
    async with database.session() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == 1


async def test_events_are_stored_with_the_payloads_the_caller_serialised_once(database: Database) -> None:
    # The intake serialises each event once for the row and its forward: what is stored is that text.
    events = [parse_event(flow()) for _ in range(3)]
    payloads = [repo.event_json(e) for e in events]
    async with database.transaction() as conn:
        with pytest.raises(ValueError, match="2 payloads for 3 events"):
            await repo.insert_events(conn, events, "api", payloads[:2])
        assert len(await repo.insert_events(conn, events, "api", payloads)) == 3
    async with database.session() as conn:
        stored = await conn.fetch("SELECT payload FROM events ORDER BY payload")
    assert sorted(str(row["payload"]) for row in stored) == sorted(payloads)
    assert [repo.forward_message(e, t).payload for e, t in zip(events, payloads, strict=True)] == [
        repo.forward_message(e).payload for e in events
    ]


async def test_a_failed_transaction_stores_nothing(database: Database) -> None:
    event = parse_event(flow())
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            await repo.insert_events(conn, [event], "api")
            raise RuntimeError("boom")
    async with database.session() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_lease_token_grows_on_takeover_and_stale_writers_are_refused(database: Database) -> None:
    lease = DatabaseLease(database, name="test-lease")
    first = await lease.acquire("a", ttl_s=30)
    assert first == 1
    assert await lease.acquire("a", ttl_s=30) == 1, "renewal keeps the token"
    assert await lease.acquire("b", ttl_s=30) is None, "a live lease is not taken"
    async with lease.fenced(first) as conn:
        await conn.execute("SELECT 1")

    # "a" pauses; its lease runs out; "b" takes over with a larger token.
    await lease.acquire("a", ttl_s=0.2)
    await asyncio.sleep(0.4)
    second = await lease.acquire("b", ttl_s=30)
    assert second == 2
    current = await lease.current()
    assert current is not None and current.holder == "b" and current.token == 2
    with pytest.raises(StaleFencingToken):
        async with lease.fenced(first) as conn:
            await conn.execute("SELECT 1")
    async with lease.fenced(second) as conn:
        await conn.execute("SELECT 1")
    # The old holder cannot renew into the new term either.
    assert await lease.acquire("a", ttl_s=30) is None


async def test_release_lets_a_successor_take_over_at_once(database: Database) -> None:
    lease = DatabaseLease(database, name="release-lease")
    assert await lease.acquire("a", ttl_s=60) == 1
    await lease.release("a")
    assert await lease.acquire("b", ttl_s=60) == 2


@pytest.mark.integration
async def test_a_holder_paused_inside_a_lease_transaction_does_not_block_the_takeover(
    pg_schema_url: str,
) -> None:
    from immune_core.storage.database import StoreUnavailable
    from immune_core.storage.postgres import PostgresDatabase

    # Two processes' pools: "a" stops answering inside a fenced transaction (its row lock held), the way
    # a SIGSTOPped leader does; "b" must still take the lease once it expires.
    db_a, db_b = PostgresDatabase(pg_schema_url, timeout=2.0), PostgresDatabase(pg_schema_url, timeout=2.0)
    await db_a.connect()
    await db_b.connect()
    try:
        await migrate(db_a)
        lease_a = DatabaseLease(db_a, name="paused-lease", hold_limit_s=0.5)
        lease_b = DatabaseLease(db_b, name="paused-lease", hold_limit_s=0.5)
        first = await lease_a.acquire("a", ttl_s=1.0)
        assert first == 1
        taken = asyncio.Event()

        async def paused_holder() -> None:
            async with lease_a.fenced(first) as conn:
                await asyncio.wait_for(taken.wait(), 30)  # silent mid-transaction until "b" leads
                await conn.execute("UPDATE leases SET holder = 'a-stale' WHERE name = 'paused-lease'")

        holder = asyncio.create_task(paused_holder())
        second = None
        for _ in range(10):  # each try waits at most the 2 s statement timeout on a's lock
            await asyncio.sleep(0.5)
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                second = await lease_b.acquire("b", ttl_s=30)
            if second is not None:
                break
        taken.set()
        assert second == 2, "the paused holder's lock kept the lease from its successor"
        with pytest.raises(StoreUnavailable):
            await holder  # the server ended the paused session: its write never lands
        current = await lease_b.current()
        assert current is not None and (current.holder, current.token) == ("b", 2)
    finally:
        await db_a.close()
        await db_b.close()


class _FlakyBus(InProcessBus):
    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.sent: list[OutboundMessage] = []

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if self.down:
            raise BusUnavailable("broker down (test)")
        self.sent.extend(messages)
        await super().publish(messages)


async def test_outbox_keeps_messages_while_the_bus_is_down_and_drains_after(database: Database) -> None:
    bus = _FlakyBus()
    relay = OutboxRelay(database, bus, Metrics(), batch_size=2, poll_interval_s=0.05)
    async with database.transaction() as conn:
        await repo.enqueue(conn, [repo.OutboxMessage("t.one", f"k{i}", f'{{"n":{i}}}') for i in range(5)])
    with pytest.raises(BusUnavailable):
        await relay.drain_once()
    assert await relay.depth() == 5
    bus.down = False
    while await relay.drain_once():
        pass
    assert await relay.depth() == 0
    assert [m.value for m in bus.sent] == [f'{{"n":{i}}}'.encode() for i in range(5)]


class _ConnectionKillingBus(InProcessBus):
    """Acknowledges the publish, then kills the relay's database connection before its delete commits."""

    def __init__(self, admin_url: str, schema: str) -> None:
        super().__init__()
        self._admin_url, self._schema = admin_url, schema
        self.kill_next = True
        self.sent: list[OutboundMessage] = []

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        import asyncpg

        self.sent.extend(messages)
        await super().publish(messages)
        if not self.kill_next:
            return
        self.kill_next = False
        admin = await asyncpg.connect(self._admin_url)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l"
                " JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = 'outbox' AND l.pid <> pg_backend_pid()",
                self._schema,
            )
        finally:
            await admin.close()
        assert killed == 1, "the relay's transaction holds the outbox rows"


@pytest.mark.integration
async def test_a_database_lost_after_the_publish_does_not_send_the_rows_twice(
    pg_url: str, pg_schema_url: str
) -> None:
    from immune_core.storage.database import StoreUnavailable
    from immune_core.storage.postgres import PostgresDatabase

    database = PostgresDatabase(pg_schema_url)
    await database.connect()
    try:
        await migrate(database)
        schema = await _current_schema(database)
        bus = _ConnectionKillingBus(pg_url, schema)
        relay = OutboxRelay(database, bus, Metrics(), batch_size=2, poll_interval_s=0.05)
        async with database.transaction() as conn:
            await repo.enqueue(conn, [repo.OutboxMessage("t.one", f"k{i}", f'{{"n":{i}}}') for i in range(5)])
        with pytest.raises(StoreUnavailable):
            await relay.drain_once()
        assert await relay.depth() == 5, "the delete did not commit"
        while await relay.drain_once():
            pass
        assert await relay.depth() == 0
        assert [m.value for m in bus.sent] == [f'{{"n":{i}}}'.encode() for i in range(5)]
    finally:
        await database.close()


async def _current_schema(database: Database) -> str:
    async with database.session() as conn:
        return str(await conn.fetchval("SELECT current_schema()"))
