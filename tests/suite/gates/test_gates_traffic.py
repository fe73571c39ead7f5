"""The traffic the gates generate, the latency proxy, and the gates against the real service."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from immune_suite.gates import sample_events
from immune_suite.gates.load import run_load
from immune_suite.gates.scanners import schemathesis
from immune_suite.paths import REPO_ROOT
from tests.suite.gates.gate_services import (
    IMMUNE_CORE,
    TOKEN,
    RunningService,
    serving_immune_core,
    wait_ready,
)
from tests.support.ports import free_port


def test_crafted_events_are_valid_for_the_service() -> None:
    models = pytest.importorskip("immune_core.events.models")
    events = sample_events.crafted(300, random.Random(5))
    for event in events:
        models.parse_event(event)
    assert {e["kind"] for e in events} == {"network_flow", "endpoint"}
    assert len({e["event_id"] for e in events}) == 300


def test_generated_events_are_valid_and_fresh() -> None:
    models = pytest.importorskip("immune_core.events.models")
    first, second = sample_events.generate(50), sample_events.generate(50)
    for event in first + second:
        models.parse_event(event)
    assert not {e["event_id"] for e in first} & {e["event_id"] for e in second}


def test_latency_proxy_forwards_both_ways_and_stops_on_sigterm(mini_service: RunningService) -> None:
    port = free_port()
    target = int(mini_service.url.rsplit(":", 1)[1])
    chaos_dir = REPO_ROOT / "chaos"
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "immune_chaos.latency_proxy",
            "--listen-port",
            str(port),
            "--target-port",
            str(target),
            "--latency-ms",
            "50",
        ],
        env={**os.environ, "PYTHONPATH": str(chaos_dir)},
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/events",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"events": sample_events.crafted(5, random.Random(1))},
            timeout=10,
        )
        assert response.status_code == 202 and response.json() == {"accepted": 5}
    finally:
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=10) == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the proxy released its port"


@pytest.fixture
def real_service(tmp_path: Path) -> Iterator[RunningService]:
    if not IMMUNE_CORE.exists():
        pytest.skip("immune-core is not installed")
    # The roles the pipeline gives its fuzzer (immune_suite/targets/tokens.py); load needs fewer.
    env = {
        **os.environ,
        "IMMUNE_API_TOKENS": f"{TOKEN}:ingest+read+operate",
        "IMMUNE_DATA_DIR": str(tmp_path / "data"),
        "IMMUNE_DEPLOYMENT_COLOR": "blue",
        "IMMUNE_LOG_LEVEL": "WARNING",
    }
    for key in ("IMMUNE_DATABASE_URL", "IMMUNE_REDIS_URL", "IMMUNE_KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(key, None)  # embedded: this test is about the gates, not the backends
    with serving_immune_core(env, tmp_path / "service.log", timeout_s=120) as service:
        yield service


@pytest.mark.slow
def test_load_against_the_real_service(real_service: RunningService, tmp_path: Path) -> None:
    run = run_load(
        real_service.url,
        real_service.token,
        tmp_path,
        "baseline",
        6,
        lambda *a, **k: None,
        extra_env={"IMMUNE_LOAD_RPS_SCALE": "0.2", "IMMUNE_LOAD_WS_SUBSCRIBERS": "1"},
    )
    assert run.verdict.details["totals"]["requests"] > 0
    assert set(run.samples) == {"blue"}, "the service reports its colour on every response"
    assert run.verdict.details["totals"]["failures"] == 0, run.verdict.summary
    # Latency SLOs are judged but not asserted: this machine is shared, and a test must not be timed.
    assert {m.name for m in run.verdict.measurements} >= {"http_req_duration p(95)", "http_req_failed rate"}
    assert next(m for m in run.verdict.measurements if m.name == "http_req_failed rate").passed


@pytest.mark.slow
def test_schemathesis_against_the_real_service(
    real_service: RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schemathesis.MAX_EXAMPLES_ENV, "10")
    result = schemathesis.scan(real_service.url, real_service.token, tmp_path)
    assert result.error is None, result.error
    assert result.details["operations"]["tested"] >= 10
    assert result.passed, result.details["failures"]
