"""Black-box recovery on real services: each dependency stopped for longer than its client's timeouts
*while HTTP sends are in flight*, then started again. Afterwards, with nothing restarted by hand:

* every answer was 202 or 503 + Retry-After (never a 500), and every 202'd event is stored;
* the outbox drains and every stored event is processed (the clients recovered by themselves);
* every stored threat is on ``immunis.threats.detected`` exactly as stored, once per threat id;
* a Kafka input holding bytes PostgreSQL refuses (a raw NUL, non-UTF-8) gets a dead-letter record that
  restores its bytes, and later events on that partition are stored and processed.

Each test runs on its own private service set (the shared services are never stopped).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from immune_core.processing.dlq import decode_raw

from tests.app.kafka_tools import produce, read_committed_to_end
from tests.app.service_process import ServiceProcess
from tests.app.support import TOKEN, flow, port_scan, query_postgres, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]

THREATS_TOPIC = "immunis.threats.detected"
# Longer than each client's timeouts: Kafka send/request 10 s, PostgreSQL 5 s, Redis 2 s.
OUTAGE_S = {"kafka": 15.0, "postgres": 12.0, "redis": 8.0}


class Traffic:
    """HTTP senders on a thread: benign flows plus a port scan from a new attacker every few seconds."""

    def __init__(self, base_url: str, rate_per_s: float = 25.0) -> None:  # requests per second
        self.statuses: Counter[int] = Counter()
        self.acknowledged: list[str] = []
        self.bad_answers: list[str] = []
        self._client = httpx.Client(
            base_url=base_url, timeout=30.0, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        self._interval = 1.0 / rate_per_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._client.close()

    def _batches(self) -> Iterator[list[dict[str, Any]]]:
        sent = 0
        while True:
            if sent % 100 == 0:
                attacker = f"198.51.100.{(sent // 100) % 250 + 1}"
                scan = port_scan(attacker, ports=120, start=datetime.now(UTC) - timedelta(seconds=20))
                for start in range(0, len(scan), 20):
                    yield scan[start : start + 20]
            yield [flow(src_ip=f"203.0.113.{sent % 200 + 1}") for _ in range(3)]
            sent += 1

    def _run(self) -> None:
        for batch in self._batches():
            if self._stop.is_set():
                return
            try:
                response = self._client.post("/api/v1/events", json={"events": batch})
            except httpx.HTTPError as exc:
                self.statuses[0] += 1
                self.bad_answers.append(f"transport: {type(exc).__name__}")
                continue
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.acknowledged.extend(e["event_id"] for e in batch)
            elif response.status_code == 503:
                if response.headers.get("retry-after") is None:
                    self.bad_answers.append("503 without Retry-After")
            else:
                self.bad_answers.append(f"{response.status_code}: {response.text[:300]}")
            time.sleep(self._interval)


def _drained(service: ServiceProcess) -> dict[str, Any] | None:
    try:
        stats = service.get("/api/v1/stats")
    except httpx.HTTPError:
        return None
    done = stats["outbox_pending"] == 0 and stats["events_processed"] == stats["events_stored"]
    return stats if done else None


@pytest.mark.parametrize(("dependency", "replicas"), [("kafka", 2), ("postgres", 1), ("redis", 1)])
def test_an_outage_with_sends_in_flight_heals_by_itself_and_loses_or_duplicates_nothing(
    dependency: str, replicas: int, private_services: Any, launch: Callable[..., ServiceProcess]
) -> None:
    services = private_services("postgres", "redis", "kafka")
    env = services.env()
    service = [launch(f"outage-{dependency}-{i}", env) for i in range(replicas)]
    url, bootstrap = env["IMMUNE_DATABASE_URL"], env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"]
    rate = 25.0 / replicas  # the same total load however many replicas share it

    with contextlib.ExitStack() as stack:
        traffic = [stack.enter_context(Traffic(s.base_url, rate)) for s in service]

        def acknowledged() -> int:
            return sum(len(t.acknowledged) for t in traffic)

        wait_for(lambda: acknowledged() >= 300, timeout_s=120, what="traffic flowing")
        wait_for(
            lambda: query_postgres(url, "SELECT 1 FROM threats LIMIT 1"), timeout_s=120, what="a first threat"
        )
        services[dependency].stop()
        time.sleep(OUTAGE_S[dependency])  # the outage itself, sends still in flight
        services[dependency].start()
        acknowledged_at_restart = acknowledged()
        wait_for(
            lambda: acknowledged() >= acknowledged_at_restart + 300,
            timeout_s=180,
            what="traffic accepted again after the restart",
        )

    statuses = sum((t.statuses for t in traffic), Counter[int]())
    bad_answers = [answer for t in traffic for answer in t.bad_answers]
    assert not bad_answers, bad_answers[:10]
    assert set(statuses) <= {202, 503}, statuses
    stats = wait_for(
        lambda: _drained(service[0]), timeout_s=300, interval_s=1.0, what="outbox drained, all processed"
    )
    stored = {r["event_id"] for r in query_postgres(url, "SELECT event_id FROM events")}
    assert {e for t in traffic for e in t.acknowledged} <= stored, "every acknowledged event is stored"
    assert stats["events_processed"] == len(stored)

    threats = {
        r["threat_id"]: json.loads(r["payload"])
        for r in query_postgres(url, "SELECT threat_id, payload FROM threats")
    }
    assert len(threats) >= 2
    published = [json.loads(v) for v in read_committed_to_end(bootstrap, THREATS_TOPIC)]
    counts = Counter(str(m["threat_id"]) for m in published)
    assert set(counts) == set(threats), "every stored threat published, nothing else"
    assert max(counts.values()) == 1, {k: n for k, n in counts.items() if n > 1}
    for message in published:
        assert message == threats[str(message["threat_id"])], "published exactly as stored"
    if dependency == "kafka":
        assert 503 not in statuses, "a Kafka outage never refuses events (the outbox keeps them)"
    for replica in service:
        ready = replica.client.get("/health/ready").json()
        assert ready["ready"] is True and ready["dependencies"]["consumer"] == "ok", ready


def test_kafka_input_with_bytes_the_database_refuses_is_dead_lettered_and_the_partition_moves_on(
    private_services: Any, launch: Callable[..., ServiceProcess]
) -> None:
    services = private_services("postgres", "kafka")
    env = services.env()
    service = launch("poison-bytes", env)
    url, bootstrap = env["IMMUNE_DATABASE_URL"], env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"]
    before, after = flow(), flow()
    poison = [
        b'{"event_id":"' + str(uuid.uuid4()).encode() + b'\x00","kind":"network_flow"}',
        json.dumps(flow()).encode().replace(b"web-01", b"web\x0001"),  # a raw NUL inside a string
        b"\xff\xfe\x00\xc3\x28 not utf-8",
    ]
    key = b"one-partition"  # all on one partition, in order: nothing after the poison may be skipped
    produce(
        bootstrap,
        "vertice.network.events",
        [json.dumps(before).encode(), *poison, json.dumps(after).encode()],
        key=key,
    )

    wait_for(
        lambda: query_postgres(
            url, f"SELECT 1 FROM events WHERE event_id = '{after['event_id']}' AND processed_at IS NOT NULL"
        ),
        timeout_s=120,
        what="the event after the poison stored and processed",
    )
    letters = query_postgres(
        url, "SELECT raw, raw_encoding, reason_code, kafka_offset FROM dead_letters ORDER BY kafka_offset"
    )
    assert [decode_raw(r["raw_encoding"], r["raw"]) for r in letters] == poison
    assert {r["reason_code"] for r in letters} == {"invalid_event"}
    processed = {
        r["event_id"]
        for r in query_postgres(url, "SELECT event_id FROM events WHERE processed_at IS NOT NULL")
    }
    assert {before["event_id"], after["event_id"]} <= processed
    wait_for(lambda: _drained(service), timeout_s=120, what="outbox drained (the DLQ messages published)")
    dlq = [json.loads(v) for v in read_committed_to_end(bootstrap, "immunis.dlq")]
    assert sorted(decode_raw(m["raw_encoding"], m["raw"]) for m in dlq) == sorted(poison)
    metrics = service.client.get("/metrics").text
    assert "immune_consumer_restarts_total 0.0" in metrics, "the consumer never crashed"
