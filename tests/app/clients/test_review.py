"""The review stage between detection and commit (``clients.review.ThreatReview`` in the detection
consumer): RTE and IP intelligence together, intel fed once per verdict, a reviewed verdict kept for
a batch read again, and a failing review that never holds the partition."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
from immune_core.clients.review import ThreatReview
from immune_core.detection.threat import Threat
from immune_core.events.models import TOPIC_BY_KIND
from immune_core.observability.metrics import Metrics
from immune_core.processing import consumer as consumer_module
from immune_core.processing.consumer import DetectionConsumer, Review
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.settings import Settings
from immune_core.storage.database import Database
from immune_core.storage.factory import open_database
from immune_core.storage.migrations import migrate
from immune_core.transport.bus import InboundMessage
from immune_core.transport.inprocess import InProcessBus

from tests.app.clients.cases import CASES, a_threat, make_client
from tests.app.clients.servers import IPIntelBehaviour, RTEBehaviour, ServiceServer, build
from tests.app.support import port_scan

ATTACKER = "198.51.100.66"
RTE = next(c for c in CASES if c.service == "rte")
IP_INTEL = next(c for c in CASES if c.service == "ip_intel")


@pytest.fixture
def rte() -> Iterator[ServiceServer]:
    server = build("rte", RTEBehaviour(escalate_to="critical"))
    yield server
    server.stop()


@pytest.fixture
def intel() -> Iterator[ServiceServer]:
    server = build("ip_intel", IPIntelBehaviour(malicious={ATTACKER: ["scanner"]}, ttl_s=600))
    yield server
    server.stop()


@pytest.fixture
async def database(make_settings: Callable[..., Settings]) -> AsyncIterator[Database]:
    db = open_database(make_settings())
    await db.connect()
    await migrate(db)
    yield db
    await db.close()


async def test_rte_and_ip_intelligence_both_advise_and_intel_is_fed_once(
    rte: ServiceServer, intel: ServiceServer
) -> None:
    rte_client, _ = make_client(RTE, rte.url)
    intel_client, _ = make_client(IP_INTEL, intel.url)
    fed: list[Sequence[object]] = []

    async def feed(items: Sequence[object]) -> None:
        fed.append(items)

    review = ThreatReview(rte=rte_client, ip_intel=intel_client, feed_intel=feed)  # type: ignore[arg-type]
    try:
        first, other = await review.review([a_threat(ATTACKER, 0.9), a_threat("203.0.113.200", 0.9)])
        again = (await review.review([a_threat(ATTACKER, 0.9)]))[0]
    finally:
        await rte_client.aclose()
        await intel_client.aclose()
    assert [(a.service, a.verdict) for a in first.advice] == [("rte", "escalate"), ("ip_intel", "malicious")]
    assert first.severity == "critical"
    assert first.confidence == pytest.approx(1 - (1 - 0.95) * (1 - 0.97), abs=1e-4)
    assert [(a.service, a.verdict) for a in other.advice] == [("rte", "escalate"), ("ip_intel", "unknown")]
    assert again.advice == first.advice
    assert len(fed) == 1  # one intel item per verdict, however many threats name the address
    item = fed[0][0]
    assert isinstance(item, dict)
    assert (item["kind"], item["indicator_type"], item["indicator"]) == ("intel", "ip", ATTACKER)
    assert intel.count("lookup") == 2  # the attacker's verdict was cached for its ttl


def _messages(events: list[dict[str, Any]]) -> list[InboundMessage]:
    topic = TOPIC_BY_KIND["network_flow"]
    return [InboundMessage(topic, 0, offset, None, json.dumps(e).encode()) for offset, e in enumerate(events)]


def _consumer(database: Database, review: Review) -> DetectionConsumer:
    metrics = Metrics()
    return DetectionConsumer(
        database=database,
        bus=InProcessBus(),
        engine=EngineHost(database, metrics),
        metrics=metrics,
        counters=IntakeCounters(),
        group_id="g",
        batch_size=1000,
        review=review,
    )


async def _stored_threats(database: Database) -> list[dict[str, Any]]:
    async with database.session() as conn:
        rows = await conn.fetch("SELECT payload FROM threats WHERE category = 'port_scan'")
    return [json.loads(r["payload"]) for r in rows]


async def test_a_failing_review_leaves_the_threats_as_the_cells_raised_them(database: Database) -> None:
    async def broken(threats: Sequence[Threat]) -> list[Threat]:
        raise RuntimeError("a bug in the review")

    result = await _consumer(database, broken).handle(_messages(port_scan(ATTACKER)))
    assert result.threats
    stored = await _stored_threats(database)
    assert stored and all(t["advice"] == [] for t in stored)


async def test_a_batch_read_again_keeps_its_reviewed_verdict_without_asking_again(
    database: Database, rte: ServiceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rte_client, _ = make_client(RTE, rte.url)
    review = ThreatReview(rte=rte_client, ip_intel=None, feed_intel=None)  # type: ignore[arg-type]
    consumer = _consumer(database, review.review)
    messages = _messages(port_scan(ATTACKER))
    real = consumer_module.commit_batch

    async def fails_once(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(consumer_module, "commit_batch", real)
        raise RuntimeError("the process died before the commit")

    monkeypatch.setattr(consumer_module, "commit_batch", fails_once)
    try:
        with pytest.raises(RuntimeError):
            await consumer.handle(messages)
        asked = rte.count("triage")
        assert asked >= 1
        await consumer.handle(messages)  # the same batch, re-read
    finally:
        await rte_client.aclose()
    assert rte.count("triage") == asked
    stored = await _stored_threats(database)
    assert stored and all(t["advice"][0]["verdict"] == "escalate" for t in stored)
