"""Promotions on a local stack whose canary steps also need a real Prometheus's checks.

The stack publishes its replicas and HAProxy's exporter to a private Prometheus (the generated config
of scripts/services/prometheus.sh, on a free port) through the real CLI. Good case: a second release
is promoted and every canary step's verdict carries the metric checks that passed on the
candidate's release. Bad case: the same promotion with a latency limit no release can meet fails at
the first step on the metrics alone (its samples pass) and rolls back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from immune_suite.pipeline.exit_codes import ExitCode
from tests.services import LocalService, ServiceSet
from tests.suite.local_stack import (
    E2E_MARKS,
    LOADED_MACHINE_COMPARISON,
    LOADED_MACHINE_SLO,
    E2EStack,
    e2e_stack,
    version_of,
)

pytestmark = E2E_MARKS


def stack_config(ports: dict[str, int], prometheus_url: str, max_latency_ms: float) -> dict[str, Any]:
    return {
        "name": "e2e-metrics",
        "target": "local",
        "dependencies": "embedded",
        "replicas": 2,
        # Lenient sample analysis (as tests/suite/targets/local/test_e2e_local.py, a loaded machine):
        # what decides here is the metric checks.
        "slo": dict(LOADED_MACHINE_SLO),
        "comparison": dict(LOADED_MACHINE_COMPARISON),
        "canary": {"steps": [50, 100], "step_duration_s": 10, "rps_scale": 0.5},
        "chaos": {"enabled": False},
        "security": {"enabled": False, "fuzz_api": False},
        "retire_delay_s": 1,
        "local": {**ports, "router_metrics_port": ports["ingress_port"] + 5},
        "metrics": {
            "url": prometheus_url,
            "min_requests": 20,
            "max_error_ratio": 0.05,
            "latency_quantile": 0.95,
            "max_latency_ms": max_latency_ms,
        },
    }


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    root = tmp_path_factory.mktemp("e2e-metrics")
    services = ServiceSet.private(["prometheus"])
    prometheus = LocalService("prometheus", services.overrides)
    prometheus.start()
    try:
        url = prometheus.env()["IMMUNE_PROMETHEUS_URL"]

        def config(ports: dict[str, int]) -> dict[str, Any]:
            # A limit far above anything a healthy replica shows (the histogram's last finite bucket is 10 s).
            return stack_config(ports, url, max_latency_ms=10_000)

        with e2e_stack(root, "e2e-metrics", config, {"IMMUNE_PROMETHEUS_URL": url}) as stack:
            strict = stack_config(stack.ports, url, max_latency_ms=0.001)
            (root / "strict.yaml").write_text(yaml.safe_dump(strict))
            yield stack
    finally:
        services.discard()


def canary_stages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    record = json.loads(Path(payload["record"]).read_text())
    return [s for s in record["stages"] if s["kind"] == "canary" and s.get("verdict")]


def test_canary_steps_pass_on_the_metrics_prometheus_scraped(e2e: E2EStack) -> None:
    code, payload = e2e.promote("--ref", e2e.v1)  # first promotion: no canary
    assert code == ExitCode.OK, payload.get("run", {}).get("failure")
    code, payload = e2e.promote("--ref", e2e.v2)
    assert code == ExitCode.OK, payload.get("run", {}).get("failure")
    stages = canary_stages(payload)
    assert [s["id"] for s in stages] == ["canary-50", "canary-100"]
    for stage in stages:
        metrics = stage["verdict"]["details"]["metrics"]
        assert metrics["judged"] is True and metrics["status"] == "pass", metrics["summary"]
        assert metrics["details"]["color"] == "green"
        assert metrics["details"]["release"] == version_of(e2e, e2e.v2)
        values = {m["name"]: m["value"] for m in stage["verdict"]["measurements"]}
        assert values["metrics.app_requests"] >= 20 and values["metrics.router_requests"] >= 20
        assert values["metrics.app_error_ratio"] == 0 and values["metrics.router_error_ratio"] == 0


def test_a_step_its_samples_pass_is_rolled_back_on_the_metrics(e2e: E2EStack) -> None:
    strict = E2EStack(e2e.root, e2e.repo, e2e.root / "strict.yaml", e2e.env, e2e.ports, e2e.v1, e2e.v2)
    code, payload = strict.promote("--ref", e2e.v1)
    assert code == ExitCode.GATE_FAILED, payload.get("run", {}).get("failure")
    assert payload["run"]["failure"]["step"] == "canary-50" and payload["run"]["status"] == "rolled_back"
    stage = canary_stages(payload)[0]
    details = stage["verdict"]["details"]
    assert details["decided_by"] == "metric checks" and "app_latency_p95_ms" in details["metrics"]["summary"]
    sample_measurements = [
        m for m in stage["verdict"]["measurements"] if not m["name"].startswith("metrics.")
    ]
    assert sample_measurements and all(m["passed"] for m in sample_measurements)
    assert e2e.served() == {("green", version_of(e2e, e2e.v2))}  # traffic back on the stable release
