"""Property: event streams whose instants span the whole range a datetime can hold (years 1-9999) go
through the real parse path and engine (and the real Kafka consumer path) without raising; events outside
the valid range, or ahead of the clock, are refused with a reason naming the field; the watermark never
runs ahead of wall time plus the skew; cytokines drain."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from immune_core.detection.engine import DetectionConfig, DetectionEngine
from immune_core.events.models import (
    DEFAULT_MAX_CLOCK_SKEW_S,
    EARLIEST_EVENT_TIME,
    LATEST_EVENT_TIME,
    TOPIC_BY_KIND,
    EventValidationError,
    parse_event,
)
from immune_core.observability.metrics import Metrics
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.settings import Settings
from immune_core.storage.factory import open_database
from immune_core.storage.migrations import migrate
from immune_core.transport.bus import InboundMessage
from immune_core.transport.inprocess import InProcessBus

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(seconds=DEFAULT_MAX_CLOCK_SKEW_S)
ANY_INSTANT = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999), timezones=st.just(UTC)
)


def _instants(now: datetime) -> st.SearchStrategy[datetime]:
    # The whole range, with weight on the edges that matter: the valid range's ends and the clock bound.
    edges = [EARLIEST_EVENT_TIME, LATEST_EVENT_TIME, now + SKEW, now]
    near_edge = st.builds(
        lambda edge, offset: edge + timedelta(microseconds=offset),
        st.sampled_from(edges),
        st.integers(-(10**9), 10**9),
    )
    near_now = st.builds(lambda s: now + timedelta(seconds=s), st.floats(-7200, 600, allow_nan=False))
    return st.one_of(ANY_INSTANT, near_edge, near_now)


def _stamp(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


@st.composite
def _event(draw: st.DrawFn, now: datetime) -> tuple[dict[str, Any], str | None]:
    """An event and the field that must be refused (None: it must be accepted)."""
    at = draw(_instants(now))
    kind = draw(st.sampled_from(["network_flow", "network_flow", "intel"]))
    src = draw(st.sampled_from(["192.0.2.66", "198.51.100.7", "203.0.113.9"]))
    event: dict[str, Any] = {"event_id": str(uuid.uuid4()), "timestamp": _stamp(at), "kind": kind}
    if kind == "intel":
        expires = draw(_instants(now))
        event |= {
            "indicator_type": "ip",
            "indicator": src,
            "severity": "high",
            "source": "x",
            "expires_at": _stamp(expires),
        }
    else:
        event |= {
            "host_id": "web-01",
            "src_ip": src,
            "dst_ip": "10.0.0.5",
            "protocol": "tcp",
            "dst_port": draw(st.integers(1, 2000)),
            "bytes_in": 0,
            "bytes_out": 60,
            "conn_state": "rejected",
        }
    refused = None
    if not EARLIEST_EVENT_TIME <= at < LATEST_EVENT_TIME or at > now + SKEW:
        refused = "timestamp"
    elif kind == "intel" and not (EARLIEST_EVENT_TIME <= expires < LATEST_EVENT_TIME and expires > at):
        refused = "expires_at"
    return event, refused


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event(NOW), min_size=1, max_size=40))
def test_streams_over_the_whole_time_range_never_raise_and_refusals_name_the_field(
    stream: list[tuple[dict[str, Any], str | None]],
) -> None:
    engine = DetectionEngine(DetectionConfig(), wall_clock=lambda: NOW)
    for raw, refused in stream:
        try:
            event = parse_event(json.dumps(raw).encode(), now=NOW)
        except EventValidationError as exc:
            assert refused is not None, (raw, exc.message)
            assert exc.message.startswith(f"invalid event: {refused}:"), (refused, exc.message)
            continue
        assert refused is None, raw
        engine.process(event)
        assert engine.watermark <= NOW + SKEW
        for cytokine in engine.drain_cytokines():
            assert cytokine.expires_at > cytokine.emitted_at
        engine.known_intel()


def _consumer_run(stream: list[dict[str, Any]], data_dir: Path) -> tuple[int, list[str]]:
    stored, reasons, _ = _consume(stream, data_dir)
    return stored, reasons


def _consume(stream: list[dict[str, Any]], data_dir: Path) -> tuple[int, list[str], list[str]]:
    """Run ``stream`` through the real consumer path (in batches of 100) on an embedded store.

    Returns (events stored, dead-letter reasons, categories of the threats stored).
    """

    async def run() -> tuple[int, list[str], list[str]]:
        settings_ = Settings(data_dir=data_dir, instance_id="prop")
        database = open_database(settings_)
        await database.connect()
        try:
            await migrate(database)
            consumer = DetectionConsumer(
                database=database,
                bus=InProcessBus(),
                engine=EngineHost(database, Metrics()),
                metrics=Metrics(),
                counters=IntakeCounters(),
                group_id="prop",
                batch_size=100,
            )
            messages = [
                InboundMessage(TOPIC_BY_KIND[raw["kind"]], 0, offset, None, json.dumps(raw).encode())
                for offset, raw in enumerate(stream)
            ]
            for start in range(0, len(messages), 100):
                await consumer.handle(messages[start : start + 100])
            async with database.session() as conn:
                stored = int(await conn.fetchval("SELECT count(*) FROM events"))
                reasons = [str(r["reason"]) for r in await conn.fetch("SELECT reason FROM dead_letters")]
                categories = [str(r["category"]) for r in await conn.fetch("SELECT category FROM threats")]
            return stored, reasons, categories
        finally:
            await database.close()

    return asyncio.run(run())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_kafka_consumer_path_stores_the_valid_and_dead_letters_the_rest_with_reasons(
    data: st.DataObject,
) -> None:
    now = datetime.now(UTC)  # the consumer checks against the wall clock
    drawn = data.draw(st.lists(_event(now), min_size=1, max_size=30))
    # The consumer reads its own clock a moment later: keep clear of the bound by a minute either way.
    bound = now + SKEW
    stream = [
        (raw, field)
        for raw, field in drawn
        if abs(datetime.fromisoformat(raw["timestamp"].replace("Z", "+00:00")) - bound) > timedelta(minutes=1)
    ]
    if not stream:
        return
    random.Random(0).shuffle(stream)
    with tempfile.TemporaryDirectory() as tmp:
        stored, reasons = _consumer_run([raw for raw, _ in stream], Path(tmp))
    refused = [field for _, field in stream if field is not None]
    assert stored == len(stream) - len(refused)
    assert sorted(r.removeprefix("invalid event: ").split(":")[0] for r in reasons) == sorted(refused)


def test_the_reported_sequence_on_the_kafka_path_goes_to_the_dlq_and_detection_goes_on(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    base = {
        "event_id": "",
        "kind": "network_flow",
        "host_id": "web-01",
        "dst_ip": "10.0.0.5",
        "protocol": "tcp",
    }
    intel = {
        "event_id": str(uuid.uuid4()),
        "timestamp": _stamp(now),
        "kind": "intel",
        "indicator_type": "ip",
        "indicator": "192.0.2.66",
        "severity": "high",
        "source": "x",
        "expires_at": "9999-12-31T23:59:59.999999Z",
    }
    poisoned = [
        intel,
        base
        | {
            "event_id": str(uuid.uuid4()),
            "timestamp": "9999-12-31T23:59:59Z",
            "src_ip": "192.0.2.66",
            "dst_port": 443,
            "bytes_in": 1,
            "bytes_out": 1,
        },
        base
        | {
            "event_id": str(uuid.uuid4()),
            "timestamp": "2100-01-01T00:00:00Z",
            "src_ip": "192.0.2.67",
            "dst_port": 443,
            "bytes_in": 1,
            "bytes_out": 1,
        },
    ]
    scan = [
        base
        | {
            "event_id": str(uuid.uuid4()),
            "timestamp": _stamp(now - timedelta(seconds=60 - i * 0.2)),
            "src_ip": "198.51.100.66",
            "dst_port": 1000 + i,
            "bytes_in": 0,
            "bytes_out": 60,
            "conn_state": "rejected",
        }
        for i in range(120)
    ]
    stored, reasons, categories = _consume(poisoned + scan, tmp_path)
    assert stored == len(scan)
    assert len(reasons) == 3
    assert sorted(r.removeprefix("invalid event: ").split(":")[0] for r in reasons) == [
        "expires_at",
        "timestamp",
        "timestamp",
    ]
    assert any("ahead of this service's clock" in r for r in reasons)
    assert "port_scan" in categories
