"""A rollback the real local stack refuses: HAProxy's admin socket disappears while a regressed candidate
gets 10 % of traffic. The run must end `rollback_failed` (exit 10) saying the proxy could not be read,
and the guard under supervisord must keep restoring until, once the socket is back, stable has it all.

Same machinery as test_e2e_local.py (tests/suite/local_stack.py: private ports, state and dependencies),
a smaller stack of its own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.targets.base import Color
from tests.suite.local_stack import (
    E2E_MARKS,
    E2EStack,
    e2e_stack,
    version_of,
    wait_for,
)

pytestmark = E2E_MARKS


def rbf_config(ports: dict[str, int]) -> dict[str, Any]:
    return {
        "name": "e2e-rbf",
        "target": "local",
        "dependencies": "services",
        "replicas": 2,
        "slo": {"p95_ms": 3000, "p99_ms": 6000, "error_ratio": 0.01},
        "canary": {"steps": [10], "step_duration_s": 10, "rps_scale": 0.5},
        "comparison": {"min_samples": 12, "min_effect_ms": 50, "max_median_increase_ratio": 0.5},
        "chaos": {"enabled": False},
        "security": {"enabled": False},
        "retire_delay_s": 1,
        "rollback_retry_s": 3,
        "local": ports,
    }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    private_dependencies: dict[str, str],
) -> Iterator[E2EStack]:
    root = tmp_path_factory.mktemp("e2e-rollback-failed")
    with e2e_stack(root, "e2e-rbf", rbf_config, private_dependencies) as running:
        yield running


def run_json(stack: E2EStack) -> dict[str, Any]:
    path = Path(stack.env["IMMUNE_STATE_DIR"]) / "pipeline" / "e2e-rbf" / "run.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_refused_rollback_is_finished_by_the_guard(stack: E2EStack) -> None:
    code, _ = stack.promote("--ref", stack.v1)
    assert code == ExitCode.OK
    target = stack.target()
    admin = target.layout.haproxy_socket
    away = admin.with_name("haproxy.sock.away")
    command = stack.promote_command(
        "--json", "--ref", stack.v2, "--candidate-env", "IMMUNE_FAULT_LATENCY_MS=400"
    )
    process = subprocess.Popen(command, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: run_json(stack)["current"] == "canary-10" and target.live_weights()["green-0"] == 10,
            400,
            "10 % of traffic on the candidate",
        )
        admin.rename(away)  # the proxy keeps serving as it is; nothing can change its routing now
        out, _ = process.communicate(timeout=400)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == ExitCode.ROLLBACK_FAILED, out[-3000:]
    payload = json.loads(out)
    assert payload["run"]["status"] == "rollback_failed"
    where = payload["run"]["failure"]["where"]
    assert "unreachable" in where["live_shares_error"]  # says it could not read the proxy, guesses nothing
    assert where["colours"]["green"]["live_replicas"] == 2

    # The guard (under supervisord) keeps at it while the proxy is unreachable...
    wait_for(lambda: run_json(stack)["failure"].get("restore_attempts", 0) >= 2, 60, "the guard to retry")
    assert run_json(stack)["settled_at"] is None
    # ... and finishes the rollback once it is reachable again.
    away.rename(admin)
    wait_for(lambda: run_json(stack)["settled_at"] is not None, 120, "the guard to finish the rollback")
    weights = target.live_weights()
    assert weights["blue-0"] == weights["blue-1"] == 100 and weights["green-0"] == weights["green-1"] == 0
    assert stack.served() == {("blue", version_of(stack, stack.v1))}
    assert target.health(Color.GREEN).live_replicas == 0  # candidate scaled away
    status = stack.cli("status", "--stack", str(stack.stack_file))
    assert "ROLLBACK FAILED" in status.stdout and "settled at" in status.stdout
