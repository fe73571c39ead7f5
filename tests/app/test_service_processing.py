"""Isolation, redelivery and recovery of the processing path, on both stores (SQLite and the real
PostgreSQL): one event that breaks detection or the database goes to the DLQ and the batch goes on; a
batch re-read after a crash is not detected twice; any bytes get a dead-letter record; stored events
that were never processed are found; "database unavailable" is recognised by class, whatever its text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from immune_core.api.app import create_app
from immune_core.api.errors import install_error_handlers
from immune_core.api.middleware import ForegroundRequests
from immune_core.detection.engine import DetectionEngine
from immune_core.events.models import TOPIC_BY_KIND, parse_event
from immune_core.observability.metrics import Metrics
from immune_core.processing import consumer as consumer_module
from immune_core.processing import dlq
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.processing.foreground import Foreground
from immune_core.processing.health import ConsumerHealth
from immune_core.processing.sweeper import UnprocessedSweeper
from immune_core.storage import repository as repo
from immune_core.storage.database import Database, StoreUnavailable
from immune_core.storage.migrations import migrate
from immune_core.storage.postgres import PostgresDatabase, is_unavailable
from immune_core.transport.bus import InboundMessage
from immune_core.transport.inprocess import InProcessBus

from tests.app.support import AUTH, flow, port_scan, wait_for

FLOWS = TOPIC_BY_KIND["network_flow"]


def _messages(events: Sequence[dict[str, Any] | bytes], topic: str = FLOWS) -> list[InboundMessage]:
    return [
        InboundMessage(topic, 0, offset, None, e if isinstance(e, bytes) else json.dumps(e).encode())
        for offset, e in enumerate(events)
    ]


def _consumer(database: Database, metrics: Metrics | None = None) -> tuple[DetectionConsumer, EngineHost]:
    metrics = metrics or Metrics()
    engine = EngineHost(database, metrics)
    consumer = DetectionConsumer(
        database=database,
        bus=InProcessBus(),
        engine=engine,
        metrics=metrics,
        counters=IntakeCounters(),
        group_id="g",
        batch_size=1000,
    )
    return consumer, engine


async def _rows(database: Database, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with database.session() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


def _cell_counters(engine: EngineHost) -> dict[str, dict[str, int]]:
    return {cell["id"]: cell["counters"] for cell in engine.describe()}


@pytest.fixture
def failing_event(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Event ids on which the detection engine raises (a detection bug, injected)."""
    ids: set[str] = set()
    real = DetectionEngine.process

    def process(self: DetectionEngine, event: Any) -> Any:
        if str(event.event_id) in ids:
            raise ZeroDivisionError("injected detection bug")
        return real(self, event)

    monkeypatch.setattr(DetectionEngine, "process", process)
    yield ids


# -- isolation ------------------------------------------------------------------------------------------
async def test_an_event_that_breaks_detection_is_dead_lettered_and_the_batch_goes_on(
    database: Database, failing_event: set[str]
) -> None:
    good, bad, later = flow(), flow(), flow()
    failing_event.add(bad["event_id"])
    metrics = Metrics()
    consumer, _ = _consumer(database, metrics)

    result = await consumer.handle(_messages([good, bad, later]))

    assert set(result.claimed) == {good["event_id"], bad["event_id"], later["event_id"]}
    processed = await _rows(database, "SELECT event_id FROM events WHERE processed_at IS NOT NULL")
    assert {r["event_id"] for r in processed} == result.claimed
    letters = await _rows(database, "SELECT reason_code, reason, raw, raw_encoding FROM dead_letters")
    assert len(letters) == 1
    assert letters[0]["reason_code"] == "detection_error" and "ZeroDivisionError" in letters[0]["reason"]
    assert json.loads(letters[0]["raw"])["event_id"] == bad["event_id"]
    outbox = await _rows(database, "SELECT payload FROM outbox WHERE topic = 'immunis.dlq'")
    published = json.loads(outbox[0]["payload"])
    assert published["reason_code"] == "detection_error" and published["error_type"] == "ZeroDivisionError"
    assert metrics.dlq.labels(reason="detection_error")._value.get() == 1


async def test_an_event_the_database_refuses_is_dead_lettered_and_the_others_are_stored(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, refused, later = flow(), flow(), flow()
    real_insert = repo.insert_events

    async def insert_events(conn: Any, events: Any, source: str) -> list[str]:
        if any(str(e.event_id) == refused["event_id"] for e in events):
            # The store's own refusal of text it cannot keep (PostgreSQL: 22021, a NUL in text).
            await conn.fetchval("SELECT $1::text", "a\x00b") if database.dialect == "postgres" else None
            raise ValueError("the store refused a value")
        return await real_insert(conn, events, source)

    monkeypatch.setattr(repo, "insert_events", insert_events)
    consumer, _ = _consumer(database)

    result = await consumer.handle(_messages([good, refused, later]))

    assert result.claimed == {good["event_id"], later["event_id"]}
    stored = await _rows(database, "SELECT event_id FROM events")
    assert {r["event_id"] for r in stored} == {good["event_id"], later["event_id"]}
    letters = await _rows(database, "SELECT reason_code, kafka_offset, raw FROM dead_letters")
    assert [(r["reason_code"], r["kafka_offset"]) for r in letters] == [("storage_error", 1)]
    assert json.loads(letters[0]["raw"])["event_id"] == refused["event_id"]


async def test_a_bug_while_committing_is_not_blamed_on_the_input(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def buggy_insert(conn: Any, events: Any, source: str) -> list[str]:
        raise TypeError("a bug in the service, not in the event")

    monkeypatch.setattr(repo, "insert_events", buggy_insert)
    consumer, _ = _consumer(database)
    with pytest.raises(TypeError):
        await consumer.handle(_messages([flow()]))  # the task restarts and retries; readiness shows a loop
    assert await _rows(database, "SELECT id FROM dead_letters") == []


async def test_an_event_the_database_cannot_look_up_is_dead_lettered_and_the_others_go_on(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, refused = flow(), flow()
    real_lookup = consumer_module.processed_among

    async def processed_among(conn: Any, event_ids: Any) -> set[str]:
        if refused["event_id"] in list(event_ids):
            raise ValueError("the store refused a parameter")
        return await real_lookup(conn, event_ids)

    monkeypatch.setattr(consumer_module, "processed_among", processed_among)
    consumer, _ = _consumer(database)
    result = await consumer.handle(_messages([refused, good]))
    assert result.claimed == {good["event_id"]}
    letters = await _rows(database, "SELECT reason_code, kafka_offset FROM dead_letters")
    assert [(r["reason_code"], r["kafka_offset"]) for r in letters] == [("storage_error", 0)]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"\x00","kind":"network_flow"}',  # a raw NUL byte
        b"\xff\xfe\x00\x01not utf-8",  # not UTF-8 at all
        b'{"kind":"network_flow","host_id":"a\\u0000b"}',  # an escaped NUL inside valid JSON
        b"",  # nothing
    ],
)
async def test_any_bytes_get_a_dead_letter_that_restores_them_exactly(database: Database, raw: bytes) -> None:
    good = flow()
    consumer, _ = _consumer(database)
    await consumer.handle(_messages([raw, good]))
    letters = await _rows(database, "SELECT reason_code, raw, raw_encoding, kafka_offset FROM dead_letters")
    assert len(letters) == 1 and letters[0]["kafka_offset"] == 0
    assert dlq.decode_raw(letters[0]["raw_encoding"], letters[0]["raw"]) == raw
    processed = await _rows(database, "SELECT event_id FROM events WHERE processed_at IS NOT NULL")
    assert [r["event_id"] for r in processed] == [good["event_id"]], "the partition moved on"
    outbox = await _rows(database, "SELECT payload FROM outbox WHERE topic = 'immunis.dlq'")
    message = json.loads(outbox[0]["payload"])
    assert dlq.decode_raw(message["raw_encoding"], message["raw"]) == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_raw_encoding_round_trips_every_byte_string_as_storable_text(raw: bytes) -> None:
    encoding, text = dlq.encode_raw(raw)
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogates: any text column takes it
    assert dlq.decode_raw(encoding, text) == raw


def test_storable_text_escapes_nul_and_lone_surrogates() -> None:
    assert dlq.storable_text("a\x00b\udc80") == "a\\x00b\\udc80"
    assert dlq.storable_text("plain") == "plain"


# -- sharing the event loop -----------------------------------------------------------------------------
@pytest.mark.parametrize("slice_s", [0.0, 3600.0])
async def test_detection_of_a_batch_hands_the_event_loop_back_between_events(
    database: Database, monkeypatch: pytest.MonkeyPatch, slice_s: float
) -> None:
    """The HTTP API shares the loop with detection: a batch must not hold it from first event to last.

    A concurrent task counts its turns; each detection notes the count. With a slice of 0 the loop is
    handed back before every event (the count moves between every two detections); with
    a slice longer than the batch it is held throughout (the count never moves) -- the bad case, which
    is what every batch did before slicing. Verdicts are the same either way.
    """
    events = port_scan("198.51.100.41", ports=12)
    consumer, engine = _consumer(database)
    consumer._detection_slice_s = slice_s
    turns = 0
    seen: list[int] = []
    real_detect = EngineHost.detect

    def detect(self: EngineHost, event: Any, lane: str) -> Any:
        seen.append(turns)
        return real_detect(self, event, lane)

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    monkeypatch.setattr(EngineHost, "detect", detect)
    task = asyncio.create_task(ticker())
    try:
        result = await consumer.handle(_messages(events))
    finally:
        task.cancel()
    assert len(seen) == len(events) and len(result.claimed) == len(events)
    moved = [later > earlier for earlier, later in itertools.pairwise(seen)]
    if slice_s == 0.0:
        assert all(moved), seen
    else:
        assert not any(moved), seen
    _, reference = _consumer(database)
    for event in events:
        reference.detect(parse_event(event), EngineHost.lane(FLOWS, 0))
    assert _cell_counters(engine) == _cell_counters(reference)


async def test_the_consumer_gives_way_to_requests_in_flight_between_slices(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = port_scan("198.51.100.42", ports=6)
    consumer, _ = _consumer(database)
    asked = asyncio.Event()

    class Watched(Foreground):
        async def give_way(self, max_wait_s: float) -> None:
            asked.set()
            await super().give_way(max_wait_s)

    foreground = Watched()
    consumer._foreground = foreground
    consumer._detection_slice_s = 0.0  # a slice per event
    consumer._detection_max_defer_s = 60.0  # past any request: only the request's end releases it
    detected: list[str] = []
    real_detect = EngineHost.detect

    def detect(self: EngineHost, event: Any, lane: str) -> Any:
        detected.append(str(event.event_id))
        return real_detect(self, event, lane)

    monkeypatch.setattr(EngineHost, "detect", detect)
    foreground.enter()  # a request in flight
    handling = asyncio.create_task(consumer.handle(_messages(events)))
    await asyncio.wait_for(asked.wait(), 30.0)  # the batch is read and its detection about to start
    for _ in range(200):
        await asyncio.sleep(0)
    assert detected == [] and not handling.done(), "detection waits for the request"
    foreground.leave()
    result = await asyncio.wait_for(handling, 30.0)
    assert len(detected) == len(events) and len(result.claimed) == len(events)


async def test_detection_waits_while_requests_are_in_flight_and_never_longer_than_its_bound() -> None:
    foreground = Foreground()
    idle = asyncio.create_task(foreground.give_way(60.0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert idle.done(), "no request in flight: one turn and on"

    foreground.enter()
    foreground.enter()
    waiting = asyncio.create_task(foreground.give_way(60.0))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done(), "two requests in flight: detection waits"
    foreground.leave()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done(), "one still in flight"
    foreground.leave()
    await asyncio.wait_for(waiting, 5.0)
    assert foreground.active == 0

    foreground.enter()  # a request that never ends does not stop detection: the wait is bounded
    await asyncio.wait_for(foreground.give_way(0.01), 5.0)


def test_http_requests_count_as_in_flight_from_first_byte_to_last_and_websockets_do_not() -> None:
    foreground = Foreground()
    app = FastAPI()
    seen: list[int] = []

    @app.get("/busy")
    async def busy() -> dict[str, int]:
        seen.append(foreground.active)
        return {"active": foreground.active}

    @app.get("/broken")
    async def broken() -> None:
        seen.append(foreground.active)
        raise RuntimeError("a route that raises still leaves")

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_json({"active": foreground.active})
        await socket.close()

    app.add_middleware(ForegroundRequests, foreground=foreground)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/busy").json() == {"active": 1}
    assert client.get("/broken").status_code == 500
    with client.websocket_connect("/ws") as socket:
        assert socket.receive_json() == {"active": 0}
    assert seen == [1, 1] and foreground.active == 0


# -- redelivery -----------------------------------------------------------------------------------------
async def test_a_batch_re_read_after_a_crash_is_detected_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = port_scan("198.51.100.40", ports=60)
    consumer, engine = _consumer(database)
    real_commit = consumer_module.commit_batch
    crashes = [asyncio.CancelledError("consumer killed between detection and commit")]

    async def crashing_commit(*args: Any, **kwargs: Any) -> Any:
        if crashes:
            raise crashes.pop()
        return await real_commit(*args, **kwargs)

    monkeypatch.setattr(consumer_module, "commit_batch", crashing_commit)
    with pytest.raises(asyncio.CancelledError):
        await consumer.handle(_messages(events))
    result = await consumer.handle(_messages(events))  # the same batch, re-read
    again = await consumer.handle(_messages(events))  # and once more after it committed

    _, reference_engine = _consumer(database)
    for event in events:
        reference_engine.detect(parse_event(event), EngineHost.lane(FLOWS, 0))
    assert _cell_counters(engine) == _cell_counters(reference_engine), "each event counted once"
    assert len(result.claimed) == len(events) and again.claimed == set()
    assert engine.uncommitted == 0
    threats = await _rows(database, "SELECT threat_id FROM threats")
    assert len(threats) == len({t["threat_id"] for t in threats}) >= 1


# -- replay at start-up ---------------------------------------------------------------------------------
async def test_replay_skips_an_event_that_breaks_detection_and_replays_only_processed_events(
    database: Database, failing_event: set[str]
) -> None:
    processed_events = [flow() for _ in range(3)]
    pending = flow()
    failing_event.add(processed_events[1]["event_id"])
    async with database.transaction() as conn:
        parsed = [parse_event(e) for e in [*processed_events, pending]]
        await repo.insert_events(conn, parsed, "api")
        await repo.claim_processed(conn, [e["event_id"] for e in processed_events])

    engine = EngineHost(database, Metrics())
    replayed = await engine.warm_up(window_s=3600, max_events=100)

    assert replayed == 3, "the unprocessed event is left to the consumer group (detected once, there)"
    assert [f.event_id for f in engine.replay_failures] == [processed_events[1]["event_id"]]
    assert engine.replay_failures[0].error_type == "ZeroDivisionError"


# -- stored but never processed -------------------------------------------------------------------------
async def test_the_sweeper_forwards_events_left_unprocessed_once_per_period(database: Database) -> None:
    lost = flow()
    async with database.transaction() as conn:
        await repo.insert_events(conn, [parse_event(lost)], "api")  # its forward was lost
    metrics = Metrics()
    woken: list[bool] = []
    sweeper = UnprocessedSweeper(
        database, metrics, lambda: woken.append(True), grace_s=60, reforward_after_s=300
    )
    now = time.time()
    assert await sweeper.sweep_once(now) == 0, "within the grace period nothing is swept"
    assert await sweeper.sweep_once(now + 61) == 1 and woken
    assert metrics.events_unprocessed._value.get() == 1
    outbox = await _rows(database, "SELECT topic, message_key, payload, created_at FROM outbox")
    assert [(r["topic"], json.loads(r["payload"])["event_id"]) for r in outbox] == [(FLOWS, lost["event_id"])]
    async with database.transaction() as conn:
        await conn.execute("UPDATE outbox SET created_at = $1", now + 100)  # relay keeping up
    assert await sweeper.sweep_once(now + 120) == 0, "not again before reforward_after_s"
    assert await sweeper.sweep_once(now + 400) == 0, "not while the relay is behind (old outbox rows)"
    async with database.transaction() as conn:
        await conn.execute("DELETE FROM outbox")
    assert await sweeper.sweep_once(now + 400) == 1

    consumer, _ = _consumer(database)
    await consumer.handle(_messages([lost]))
    assert await sweeper.sweep_once(now + 1000) == 0
    assert metrics.events_unprocessed._value.get() == 0


# -- consumer health ------------------------------------------------------------------------------------
def test_consumer_health_reports_crash_loops_and_stalls() -> None:
    metrics = Metrics()
    health = ConsumerHealth(metrics, stall_after_s=60, crash_restarts=3, crash_window_s=300)
    health.started(now=1000)
    assert health.state(now=1000) == "starting"
    health.observed_lag(0, attached=True)
    health.progressed(now=1000)
    assert health.state(now=1001) == "ok"
    health.observed_lag(50, attached=True)
    assert health.state(now=1059) == "ok"
    assert health.state(now=1061) == "stuck"
    assert health.state(now=1061, bus_up=False) == "ok", "a broker outage is not the consumer's fault"
    health.progressed(now=1062)
    assert health.state(now=1063) == "ok"
    for t in (1100, 1110, 1120):
        health.started(now=t)
    assert health.state(now=1121) == "crash_looping"
    assert metrics.consumer_restarts._value.get() == 3
    health.progressed(now=1130)
    assert health.state(now=1131) != "crash_looping", "progress after the last restart: the loop healed"
    health.started(now=1140)
    assert health.state(now=1141) == "crash_looping", "restarted again, no progress since"
    health.observed_lag(0, attached=True)
    assert health.state(now=1500) == "ok", "restarts age out of the window"


# -- database outages, by class -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (
            asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
            True,
        ),
        (asyncpg.InterfaceError("pool is closing"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), True),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), True),
        (asyncpg.TooManyConnectionsError("too many clients"), True),
        (ConnectionResetError(104, "reset"), True),
        (OSError(111, "refused"), True),
        (TimeoutError(), True),
        (asyncpg.UniqueViolationError("duplicate key"), False),
        (asyncpg.CharacterNotInRepertoireError("invalid byte sequence"), False),
        (ValueError("bad value"), False),
    ],
)
def test_database_outages_are_recognised_by_class(error: Exception, unavailable: bool) -> None:
    assert is_unavailable(error) is unavailable
    try:
        raise RuntimeError("wrapper") from error
    except RuntimeError as wrapped:
        assert is_unavailable(wrapped) is unavailable, "the cause chain is followed"


def test_an_outage_error_that_skips_the_store_wrapper_still_answers_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app, retry_after_s=3)

    @app.get("/begin")
    async def begin() -> None:
        raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a real bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/begin")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "3"
        assert answer.json()["error"] == "storage_unavailable"
        assert client.get("/bug").status_code == 500


@pytest.mark.integration
async def test_the_pool_replaces_connections_killed_under_it(pg_schema_url: str) -> None:
    database = PostgresDatabase(pg_schema_url, pool_size=4, timeout=5.0)
    await database.connect()
    await migrate(database)

    async def kill(pid: int) -> None:
        admin = await asyncpg.connect(pg_schema_url)  # only this pool's connection: the server is shared
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

    try:
        for use in ("session", "transaction", "transaction"):
            # Killed mid-operation: the error that surfaces is "unavailable" (503), never a raw driver error.
            with pytest.raises(StoreUnavailable):
                if use == "session":
                    async with database.session() as conn:
                        await kill(await conn.fetchval("SELECT pg_backend_pid()"))
                        await conn.fetchval("SELECT 1")
                else:
                    async with database.transaction() as conn:
                        await kill(await conn.fetchval("SELECT pg_backend_pid()"))
                        await conn.fetchval("SELECT 1")
            # Killed while idle in the pool: the pool notices and hands out a working connection.
            async with database.session() as conn:
                await kill(await conn.fetchval("SELECT pg_backend_pid()"))
            async with database.transaction() as conn:
                assert await conn.fetchval("SELECT 1") == 1
        assert await database.ping()
    finally:
        await database.close()


def test_a_crash_looping_consumer_makes_the_replica_unready_until_it_progresses(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_handle = DetectionConsumer.handle

    async def crashing_handle(self: DetectionConsumer, messages: Any) -> Any:
        raise RuntimeError("injected consumer crash")

    # Ready first: a 503 while the service still boots (under CPU load that takes a while) is not the
    # crash loop this test is about, so the crash is only injected into a replica that was ready.
    wait_for(lambda: client.get("/health/ready").status_code == 200, timeout_s=60, what="ready before")
    monkeypatch.setattr(DetectionConsumer, "handle", crashing_handle)
    event = flow()
    assert client.post("/api/v1/events", json=event, headers=AUTH).status_code == 202

    def crash_looping() -> dict[str, Any] | None:
        answer = client.get("/health/ready")
        if answer.status_code != 503:
            return None
        body: dict[str, Any] = answer.json()
        # Unready for the crash loop itself, not for some other reason that happens to coincide.
        return body if body["dependencies"]["consumer"] == "crash_looping" else None

    body = wait_for(crash_looping, timeout_s=60, what="crash loop reported")
    assert body["dependencies"]["consumer"] == "crash_looping" and body["ready"] is False
    restarts = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("immune_consumer_restarts_total ")
    ]
    assert float(restarts[0].split()[1]) >= 3
    assert client.get("/api/v1/stats", headers=AUTH).json()["events_processed"] == 0

    monkeypatch.setattr(DetectionConsumer, "handle", real_handle)  # the bug is fixed (a new version)
    wait_for(lambda: client.get("/health/ready").status_code == 200, timeout_s=60, what="ready again")
    wait_for(
        lambda: client.get("/api/v1/stats", headers=AUTH).json()["events_processed"] == 1,
        timeout_s=60,
        what="the held event processed",
    )


def test_an_event_that_breaks_the_start_up_replay_is_dead_lettered_and_the_service_boots(
    make_settings: Any, failing_event: set[str]
) -> None:
    settings = make_settings()
    event = flow()
    with TestClient(create_app(settings, configure_logs=False)) as first:
        wait_for(lambda: first.get("/health/ready").status_code == 200, what="ready")
        assert first.post("/api/v1/events", json=event, headers=AUTH).status_code == 202
        wait_for(
            lambda: first.get("/api/v1/stats", headers=AUTH).json()["events_processed"] == 1, what="processed"
        )

    failing_event.add(event["event_id"])  # from now on detection raises on it (a bug in a new version)
    with TestClient(create_app(settings, configure_logs=False)) as second:
        wait_for(lambda: second.get("/health/ready").status_code == 200, what="ready despite the bad event")
        stats = second.get("/api/v1/stats", headers=AUTH).json()
        assert stats["dead_letters"] == 1
        metrics = second.get("/metrics").text
        assert 'immune_dlq_messages_total{reason="detection_error"} 1.0' in metrics


def test_the_foreground_wait_bound_is_a_setting_in_milliseconds(make_settings: Any) -> None:
    from immune_core.runtime import Runtime

    assert Runtime(make_settings()).consumer._detection_max_defer_s == pytest.approx(0.02)  # the default
    runtime = Runtime(make_settings(detection_max_defer_ms=75))
    assert runtime.consumer._detection_max_defer_s == pytest.approx(0.075)
    assert Runtime(make_settings(detection_max_defer_ms=0)).consumer._detection_max_defer_s == 0.0


@pytest.mark.parametrize("value", ["251", "-1", "nan", "20ms"])
def test_an_out_of_range_foreground_wait_bound_is_refused_at_start(value: str, tmp_path: Any) -> None:
    """The real entry point, as a deployment starts it: it exits before serving, naming the setting."""
    import os
    import subprocess
    import sys

    env = {
        "PATH": os.environ.get("PATH", ""),
        "IMMUNE_DATA_DIR": str(tmp_path),
        "IMMUNE_DETECTION_MAX_DEFER_MS": value,
    }
    started = subprocess.run(
        [sys.executable, "-m", "immune_core.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode != 0
    assert "detection_max_defer_ms" in started.stderr
    with pytest.raises(ValueError, match="detection_max_defer_s"):
        DetectionConsumer(
            database=None,  # type: ignore[arg-type]
            bus=None,  # type: ignore[arg-type]
            engine=None,  # type: ignore[arg-type]
            metrics=Metrics(),
            counters=IntakeCounters(),
            group_id="g",
            batch_size=1,
            detection_max_defer_s=float(value) / 1000 if value[-1].isdigit() else float("nan"),
        )
