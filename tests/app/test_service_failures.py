"""Failure tests that really stop a dependency, each on its own private service set.

Kafka down: the API still accepts and stores; the outbox drains after the restart; nothing is lost.
Redis down: the service degrades (ready stays true) and recovers. PostgreSQL down: ready goes false,
the API answers 503 + Retry-After and acknowledges nothing it did not store. Leader killed or paused:
another replica leads within 10 s under a larger fencing token and no singleton work is duplicated.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.app.kafka_tools import read_until
from tests.app.service_process import ServiceProcess
from tests.app.support import flow, port_scan, query_postgres, wait_for

# serial: a new leader must be elected within 10 s of real time.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.serial]

FAST_COORDINATION = {"IMMUNE_LEASE_TTL_S": "3", "IMMUNE_LEASE_RENEW_INTERVAL_S": "0.5"}


def _dependency(service: ServiceProcess, name: str) -> str:
    return str(service.client.get("/health/ready").json()["dependencies"][name])


def test_kafka_down_api_still_stores_and_the_outbox_drains_after_restart(
    private_services: Any, launch: Callable[..., ServiceProcess]
) -> None:
    services = private_services("postgres", "redis", "kafka")
    env = services.env()
    service = launch("kafka-down", env)
    services["kafka"].stop()
    wait_for(lambda: _dependency(service, "kafka") == "down", timeout_s=60, what="kafka reported down")

    events = port_scan("198.51.100.23")
    acknowledged: list[str] = []
    for start in range(0, len(events), 40):
        response = service.post_events(events[start : start + 40])
        assert response.status_code == 202, response.text
        acknowledged.extend(response.json()["event_ids"])
    assert len(acknowledged) == len(events)
    ready = service.client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    stats = service.get("/api/v1/stats")
    assert stats["events_stored"] == len(events) and stats["outbox_pending"] >= len(events)

    services["kafka"].start()
    drained = wait_for(
        lambda: (
            (s := service.get("/api/v1/stats"))["events_processed"] == len(events)
            and s["outbox_pending"] == 0
            and s
        ),
        timeout_s=180,
        what="outbox drained and events processed",
    )
    assert drained["events_stored"] == len(events)
    threat = wait_for(
        lambda: service.get("/api/v1/threats", antigen="198.51.100.23")["items"], timeout_s=60, what="threat"
    )[0]
    read_until(
        env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"],
        "immunis.threats.detected",
        lambda seen: any(m["threat_id"] == threat["threat_id"] for m in seen),
    )


def test_redis_down_degrades_and_recovers(
    private_services: Any, launch: Callable[..., ServiceProcess]
) -> None:
    services = private_services("postgres", "redis", "kafka")
    service = launch(
        "redis-down", {**services.env(), **FAST_COORDINATION, "IMMUNE_HOMEOSTASIS_INTERVAL_S": "0.3"}
    )
    services["redis"].stop()
    wait_for(lambda: _dependency(service, "redis") == "down", timeout_s=60, what="redis reported down")
    ready = service.client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert service.post_events([flow()]).status_code == 202
    # The level is still decided and stored while the hormone cannot be broadcast.
    override = service.client.put("/api/v1/homeostasis/override", json={"level": "high", "duration_s": 600})
    assert override.status_code == 204
    wait_for(lambda: service.get("/api/v1/homeostasis")["level"] == 2, timeout_s=60, what="level stored")

    services["redis"].start()
    wait_for(lambda: _dependency(service, "redis") == "ok", timeout_s=60, what="redis reported ok")
    wait_for(
        lambda: (service.get("/api/v1/homeostasis")["hormone"] or {}).get("level") == 2,
        timeout_s=60,
        what="hormone received after recovery",
    )


def test_postgres_down_means_not_ready_503_and_nothing_acknowledged_unstored(
    private_services: Any, launch: Callable[..., ServiceProcess]
) -> None:
    services = private_services("postgres", "redis", "kafka")
    env = services.env()
    service = launch("pg-down", env)
    acknowledged: list[str] = []
    refused = 0

    def send_one() -> int:
        nonlocal refused
        event = flow()
        response = service.client.post("/api/v1/events", json=event)
        if response.status_code == 202:
            acknowledged.append(event["event_id"])
        else:
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"] == "storage_unavailable"
            refused += 1
        return response.status_code

    for _ in range(20):
        assert send_one() == 202
    services["postgres"].stop()
    wait_for(lambda: service.client.get("/health/ready").status_code == 503, timeout_s=60, what="not ready")
    not_ready = service.client.get("/health/ready").json()
    assert not_ready["dependencies"]["database"] == "down"
    assert not_ready["reasons"] == ["database down (no answer to a ping within the readiness bound)"]
    assert service.client.get("/health/live").status_code == 200
    for _ in range(10):
        assert send_one() == 503
    assert service.client.get("/api/v1/threats").status_code == 503

    services["postgres"].start()
    wait_for(lambda: service.client.get("/health/ready").status_code == 200, timeout_s=90, what="ready again")
    for _ in range(5):
        assert send_one() == 202
    stored = {
        row["event_id"] for row in query_postgres(env["IMMUNE_DATABASE_URL"], "SELECT event_id FROM events")
    }
    assert set(acknowledged) <= stored, "every acknowledged event is stored"
    assert len(stored) == len(acknowledged) == 25 and refused == 10


def _leader(services: list[ServiceProcess]) -> ServiceProcess | None:
    for service in services:
        try:
            if service.get("/api/v1/coordination")["is_leader"]:
                return service
        except Exception:
            continue
    return None


def _assert_no_duplicate_singleton_work(database_url: str) -> None:
    """Per duty, the ledger's tokens never go backwards: once a newer term wrote, an older one never did."""
    rows = query_postgres(database_url, "SELECT duty, token, holder FROM singleton_ledger ORDER BY id")
    assert rows
    by_duty: dict[str, list[Any]] = {}
    for row in rows:
        by_duty.setdefault(row["duty"], []).append(row)
    for duty, entries in by_duty.items():
        tokens = [r["token"] for r in entries]
        assert tokens == sorted(tokens), f"{duty}: an older term wrote after a newer one: {tokens}"
        holders: dict[int, set[str]] = {}
        for r in entries:
            holders.setdefault(r["token"], set()).add(r["holder"])
        assert all(len(h) == 1 for h in holders.values()), f"{duty}: two holders under one token {holders}"


@pytest.mark.parametrize("failure", ["killed", "paused"])
def test_leader_failure_elects_a_new_leader_within_10s_without_duplicate_work(
    failure: str, private_services: Any, launch: Callable[..., ServiceProcess]
) -> None:
    services = private_services("postgres", "redis", "kafka")
    env = {**services.env(), "IMMUNE_LYMPHNODE_INTERVAL_S": "0.3", "IMMUNE_HOMEOSTASIS_INTERVAL_S": "0.3"}
    replicas = [launch("replica-a", env), launch("replica-b", env)]
    old = wait_for(lambda: _leader(replicas), timeout_s=60, what="a leader")
    old_term = old.get("/api/v1/coordination")["term"]
    survivor = replicas[1] if old is replicas[0] else replicas[0]
    wait_for(
        lambda: query_postgres(env["IMMUNE_DATABASE_URL"], "SELECT 1 FROM singleton_ledger LIMIT 1"),
        what="work",
    )

    failed_at = time.monotonic()
    if failure == "killed":
        old.kill()
    else:
        old.signal(signal.SIGSTOP)  # a paused leader: it still believes it leads
    wait_for(
        lambda: survivor.get("/api/v1/coordination")["is_leader"],
        timeout_s=30,
        interval_s=0.1,
        what="survivor elected",
    )
    takeover_s = time.monotonic() - failed_at
    assert takeover_s < 10.0, f"re-election took {takeover_s:.1f}s"
    coordination = survivor.get("/api/v1/coordination")
    assert coordination["term"] > old_term and coordination["leader"] == survivor.name
    if failure == "paused":
        # Let the old leader wake up with its stale token and try to act, then check the ledger.
        wait_for(
            lambda: query_postgres(
                env["IMMUNE_DATABASE_URL"],
                f"SELECT 1 FROM singleton_ledger WHERE token = {coordination['term']}",
            ),
            what="new term working",
        )
        old.signal(signal.SIGCONT)
        wait_for(
            lambda: not old.get("/api/v1/coordination")["is_leader"], timeout_s=30, what="old steps down"
        )
        time.sleep(1.0)  # give the woken replica's duty loops a chance to (fail to) write
    _assert_no_duplicate_singleton_work(env["IMMUNE_DATABASE_URL"])
