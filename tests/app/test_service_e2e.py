"""End to end on real PostgreSQL, Redis and Kafka: ``immune-core serve`` as a process, a simulated
attack fed through Kafka, the threat seen on the API, the WebSocket and ``immunis.threats.detected``;
poison messages end in ``immunis.dlq``. Runs on a private service set (nothing shared is disturbed)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from immune_core.simulator import generate
from websockets.sync.client import connect

from tests.app.kafka_tools import produce, read_until
from tests.app.service_process import IMMUNE_CORE, ServiceProcess
from tests.app.support import TOKEN, flow, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def stack(private_services: Any) -> dict[str, str]:
    return dict(private_services("postgres", "redis", "kafka").env())


@pytest.fixture
def service(stack: dict[str, str], tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess("e2e-a", {**stack, "IMMUNE_DATA_DIR": str(tmp_path)}, tmp_path, TOKEN).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


class StreamRecorder:
    """A WebSocket subscriber on its own thread."""

    def __init__(self, url: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._url = url
        self._ws: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            with connect(self._url, additional_headers=headers, open_timeout=10) as ws:
                self._ws = ws
                for raw in ws:
                    self.messages.append(json.loads(raw))
        except Exception:  # closed at the end of the test
            return

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
        self._thread.join(timeout=10)


def test_simulated_attack_through_kafka_reaches_api_websocket_and_topic(
    service: ServiceProcess, stack: dict[str, str]
) -> None:
    scenario, seed = "port_scan", 11
    attacker = {e.antigen for e in generate(scenario, seed=seed) if e.label == scenario}
    assert len(attacker) == 1
    antigen = str(attacker.pop()).split(":", 1)[1]

    ws_url = service.base_url.replace("http", "ws") + "/ws/stream?types=threat"

    def live_recorder() -> StreamRecorder | None:
        # Right after start-up the replica may still be attaching to the output topics.
        candidate = StreamRecorder(ws_url)
        hello = wait_for(lambda: candidate.messages, what="subscription confirmed")[0]
        if hello["live"]:
            return candidate
        candidate.close()
        return None

    recorder: StreamRecorder = wait_for(live_recorder, timeout_s=120, interval_s=0.5, what="live stream")
    try:
        env = {**service.env, "IMMUNE_KAFKA_BOOTSTRAP_SERVERS": stack["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"]}
        subprocess.run(
            [str(IMMUNE_CORE), "simulate", "--scenario", scenario, "--seed", str(seed), "--target", "kafka"],
            env=env,
            check=True,
            timeout=300,
            capture_output=True,
        )
        try:
            threats = wait_for(
                lambda: service.get("/api/v1/threats", antigen=antigen, category="port_scan")["items"],
                timeout_s=180,
                what="port scan on the API",
            )
        except AssertionError as exc:
            stats = service.get("/api/v1/stats")
            found = service.get("/api/v1/threats")["items"]
            summary = [(t["category"], t["antigen"]) for t in found]
            agents = [
                (a["id"], a["counters"], a.get("lanes")) for a in service.get("/api/v1/agents")["agents"]
            ]
            metrics = [
                line
                for line in service.client.get("/metrics").text.splitlines()
                if line.startswith(("immune_detection", "immune_events_total"))
            ]
            raise AssertionError(
                f"{exc}\nstats={stats}\nthreats={summary}\nagents={agents}\nmetrics={metrics}"
            ) from None
        threat_id = threats[0]["threat_id"]
        pushed = wait_for(
            lambda: [
                m
                for m in recorder.messages
                if m.get("type") == "threat" and m["data"]["threat_id"] == threat_id
            ],
            timeout_s=60,
            what="threat on the WebSocket",
        )
        assert pushed[0]["data"]["antigen"] == antigen
    finally:
        recorder.close()
    published = read_until(
        stack["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"],
        "immunis.threats.detected",
        lambda seen: any(m["threat_id"] == threat_id for m in seen),
    )
    assert next(m for m in published if m["threat_id"] == threat_id)["category"] == "port_scan"

    # Every event the simulator produced is stored and processed exactly once.
    total = len(generate(scenario, seed=seed))
    stats = wait_for(
        lambda: (s := service.get("/api/v1/stats"))["events_processed"] == total and s,
        timeout_s=180,
        what="all events processed",
    )
    assert stats["events_stored"] == total


def test_poison_messages_go_to_the_dlq_and_the_consumer_moves_on(
    service: ServiceProcess, stack: dict[str, str]
) -> None:
    bootstrap = stack["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"]
    good = flow()
    wrong_topic = flow()
    produce(
        bootstrap,
        "vertice.network.events",
        [b"{not json", json.dumps({**flow(), "dst_port": -1}).encode(), json.dumps(good).encode()],
    )
    produce(bootstrap, "vertice.endpoint.events", [json.dumps(wrong_topic).encode()])
    wait_for(lambda: service.get("/api/v1/stats")["dead_letters"] == 3, timeout_s=90, what="3 dead letters")
    wait_for(lambda: service.get("/api/v1/stats")["events_processed"] == 1, timeout_s=90, what="good event")
    letters = read_until(bootstrap, "immunis.dlq", lambda seen: len(seen) >= 3)
    reasons = " | ".join(m["reason"] for m in letters)
    assert "dst_port" in reasons and "does not belong on topic" in reasons and "invalid event" in reasons
    metrics = service.client.get("/metrics").text
    assert 'immune_dlq_messages_total{reason="invalid_event"} 2.0' in metrics
