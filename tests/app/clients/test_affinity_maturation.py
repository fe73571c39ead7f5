"""The Adaptive Immunity service used end to end: affinity maturation of a B cell's primary response
consults it (``adaptive.maturation``), against a real local server of its contract.

Good case: the service ranks another of the candidates first (it knows where the threat lies), so the
memory detector is moved there, stored (both stores) and loaded into every engine, asked once per event.
Bad cases: down, slow beyond the timeout, 5xx, malformed and schema-breaking answers take the fallback
``internal_affinity`` (counted): the detector the core chose itself is stored and the batch commits.
The service is also wired from the settings (``IMMUNE_ADAPTIVE_IMMUNITY_URL``) in the running service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from immune_core.adaptive.maturation import AffinityQuery, AffinityScorer, choose
from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.events.models import TOPIC_BY_KIND, parse_event
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.engine_host import EngineHost
from immune_core.settings import Settings
from immune_core.storage.database import Database
from immune_core.transport.bus import InboundMessage

from tests.app.adaptive.consumers import detection_consumer, engine_host, vertical_scan
from tests.app.clients.cases import CASES, make_client, sample
from tests.app.clients.servers import AffinityBehaviour, ServiceServer, build
from tests.app.support import AUTH, port_scan, wait_for

ADAPTIVE = next(c for c in CASES if c.service == "adaptive_immunity")
CELLS = ("neutrophil", "macrophage", "nk_cell", "dendritic", "helper_t", "b_cell", "cytotoxic_t")
SCANNER = "45.133.7.10"
FLOWS = TOPIC_BY_KIND["network_flow"]
# Where the service's own model puts this scanner's behaviour (features targets, novelty, failed, probes,
# auth, volume): like the antigen but at full volume. Its ranking of the candidates then differs from
# the core's (checked in the test, so the good case cannot pass by agreement).
ELSEWHERE = (0.45, 1.0, 1.0, 1.0, 0.0, 1.0)


@pytest.fixture
def adaptive() -> Iterator[ServiceServer]:
    server = build("adaptive_immunity", AffinityBehaviour(prefer=ELSEWHERE))
    yield server
    server.stop()


EVENTS = vertical_scan(SCANNER, datetime.now(UTC) - timedelta(minutes=5))


def _host(database: Database) -> EngineHost:
    return engine_host(database, [CellSpec(type=name) for name in CELLS])


def _consumer(database: Database, host: EngineHost, scorer: AffinityScorer | None) -> DetectionConsumer:
    return detection_consumer(database, host, affinity=scorer)


def _messages() -> list[InboundMessage]:
    return [InboundMessage(FLOWS, 0, n, None, json.dumps(e).encode()) for n, e in enumerate(EVENTS)]


def _internal_choice() -> list[float]:
    """The detector the core learns from the scan by itself (CLONALG is seeded: the same everywhere)."""
    engine = DetectionEngine(DetectionConfig(cells=[CellSpec(type=name) for name in CELLS]))
    for event in EVENTS:
        engine.process(parse_event(event))
    [detector] = engine.memory_detectors()
    return [round(float(x), 6) for x in detector.features]


async def _stored(database: Database) -> list[float]:
    async with database.session() as conn:
        [row] = await conn.fetch("SELECT features FROM memory_detectors WHERE deleted = $1", False)
    return [float(x) for x in json.loads(str(row["features"]))]


def _answered_query(server: ServiceServer) -> tuple[AffinityQuery, list[float]]:
    [request] = [r for r in server.requests if r.operation == "affinity"]
    candidates = tuple(tuple(c) for c in request.body["candidates"])
    query = AffinityQuery("d", "source_ip", tuple(request.body["antigen"]), candidates)
    answer = [1.0 / (1.0 + math.dist(ELSEWHERE, c)) for c in candidates]
    return query, answer


async def test_the_service_s_ranking_moves_the_memory_detector_and_is_asked_once(
    database: Database, adaptive: ServiceServer
) -> None:
    client, registry = make_client(ADAPTIVE, adaptive.url)
    try:
        host = _host(database)
        consumer = _consumer(database, host, client)
        await consumer.handle(_messages())
        query, answer = _answered_query(adaptive)
        assert adaptive.bad_requests == []
        assert 2 <= len(query.candidates) <= 5
        assert list(query.candidates[0]) == pytest.approx(_internal_choice())  # the core's own first
        chosen = choose(query, answer)
        assert chosen > 0, "the service's ranking must differ from the core's for this test to mean anything"
        stored = await _stored(database)
        assert stored == pytest.approx(list(query.candidates[chosen]))
        assert stored != pytest.approx(_internal_choice())
        engine = next(iter(host.engines.values()))
        [loaded] = engine.memory_detectors()
        assert [float(x) for x in loaded.features] == pytest.approx(stored)
        assert [float(x) for x in host.template.memory_detectors()[0].features] == pytest.approx(stored)
        await consumer.handle(_messages())  # re-read after a crash: processed already, not asked again
        assert adaptive.count("affinity") == 1
        assert (
            sample(
                registry,
                "immune_dependency_fallbacks_total",
                dependency="adaptive_immunity",
                fallback="internal_affinity",
            )
            == 0
        )
    finally:
        await client.aclose()


@pytest.mark.parametrize("failure", ["down", "slow", "error", "malformed", "invalid"])
async def test_without_an_answer_the_internal_choice_stands_and_the_batch_commits(
    database: Database, adaptive: ServiceServer, failure: str
) -> None:
    if failure == "down":
        adaptive.stop()
    else:
        adaptive.mode, adaptive.slow_s = failure, 2.0
    client, registry = make_client(ADAPTIVE, adaptive.url, timeout_s=0.3, retries=1)
    try:
        result = await _consumer(database, _host(database), client).handle(_messages())
        assert len(result.claimed) == len(EVENTS)
        assert await _stored(database) == pytest.approx(_internal_choice())
        fallbacks = sample(
            registry,
            "immune_dependency_fallbacks_total",
            dependency="adaptive_immunity",
            fallback="internal_affinity",
        )
        assert fallbacks == 1
    finally:
        await client.aclose()


async def test_without_the_service_configured_the_internal_choice_stands(database: Database) -> None:
    await _consumer(database, _host(database), None).handle(_messages())
    assert await _stored(database) == pytest.approx(_internal_choice())


def test_an_answer_that_is_no_answer_keeps_the_internal_choice() -> None:
    query = AffinityQuery("d", "source_ip", (0.5, 0.5), ((0.5, 0.5), (0.9, 0.9)))
    assert choose(query, [0.0, 1.0]) == 1  # good case: the service's ranking decides
    for answer in (None, [0.0], [0.0, 1.5], [0.0, float("nan")], [0.2, 0.2]):
        assert choose(query, answer) == 0, answer  # ties keep the core's detector


def test_the_running_service_consults_the_adaptive_immunity_service_from_its_settings(
    make_settings: Callable[..., Settings],
    start_client: Callable[[Settings], TestClient],
    adaptive: ServiceServer,
) -> None:
    settings = make_settings(
        external_timeout_s=1.0,
        external_retries=0,
        external_probe_interval_s=0.0,
        adaptive_immunity_url=adaptive.url,
    )
    client = start_client(settings)
    events = port_scan("198.51.100.93")
    response = client.post("/api/v1/events", json={"events": events}, headers=AUTH)
    assert response.status_code == 202, response.text
    wait_for(lambda: adaptive.count("affinity") >= 1, what="affinity maturation reaching the service")
    body = adaptive.requests[-1].body
    assert len(body["antigen"]) == 6 and all(len(c) == 6 for c in body["candidates"])
    assert adaptive.bad_requests == []
