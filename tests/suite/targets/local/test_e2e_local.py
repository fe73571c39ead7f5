"""The local stack end to end: real supervisord, HAProxy, service replicas, locust and Chaos Toolkit.

One stack (private state dir and ports) lives through the module, like a real one lives through
releases: first promotion to blue, a good candidate promoted to green, a regressed candidate
rolled back at its first canary step, a tampered record refused, the pipeline SIGKILLed mid-canary
and recovered, then `rollback` to the previous record. Dependencies are the real local
PostgreSQL/Redis/Kafka, a private set (tests/services.py) so no other session shares the leader lease.

The two candidates are two commits of a snapshot of this working tree, so stable and candidate run
different code. The security gate has its own tests (tests/suite/gates); here it is off so that findings
in unrelated, in-progress code cannot hide the pipeline's behaviour. The fixed SLOs are loose
because the test machine is shared and loaded: the regression must be caught by the same-window
comparison with stable, which machine load does not fool.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.targets.base import Color
from tests.suite.local_stack import (
    E2E_MARKS,
    LOADED_MACHINE_COMPARISON,
    LOADED_MACHINE_SLO,
    E2EStack,
    e2e_stack,
    version_of,
    wait_for,
)

pytestmark = E2E_MARKS


def e2e_config(ports: dict[str, int]) -> dict[str, Any]:
    return {
        "name": "e2e",
        "target": "local",
        "dependencies": "services",
        "replicas": 2,
        "slo": dict(LOADED_MACHINE_SLO),
        "canary": {"steps": [10, 50, 100], "step_duration_s": 10, "rps_scale": 0.5},
        "comparison": dict(LOADED_MACHINE_COMPARISON),
        # kill-leader first: right after kill-candidate-instance the lease may still be held by the
        # killed instance (its TTL not yet run out), and the experiment does not wait for a new leader.
        "chaos": {"enabled": True, "experiments": ["kill-leader", "kill-candidate-instance"]},
        "security": {"enabled": False},
        "retire_delay_s": 1,
        "local": ports,
    }


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory, private_dependencies: dict[str, str]) -> Iterator[E2EStack]:
    with e2e_stack(tmp_path_factory.mktemp("e2e"), "e2e", e2e_config, private_dependencies) as stack:
        yield stack


def canary_samples(record: dict[str, Any], step_id: str) -> list[dict[str, Any]]:
    """The load samples (every line of every samples.jsonl) a canary step's verdict names."""
    stage = next(s for s in record["stages"] if s["id"] == step_id)
    paths = [a["path"] for a in stage["verdict"]["artifacts"] if a["path"].endswith("samples.jsonl")]
    return [
        json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()
    ]


def assert_no_baseline_left(e2e: E2EStack) -> None:
    target = e2e.target()
    assert not target.baseline_running()
    running = {n for n, i in target.supervisor.process_states().items() if i["statename"] == "RUNNING"}
    assert not {n for n in running if n.startswith("immune-baseline")}
    assert all(w == 0 for name, w in target.live_weights().items() if name.startswith("baseline"))


def test_first_promotion_goes_to_blue(e2e: E2EStack) -> None:
    code, payload = e2e.promote("--ref", e2e.v1)
    assert code == ExitCode.OK, payload.get("run", {}).get("failure")
    assert payload["run"]["candidate_color"] == "blue"
    assert e2e.served() == {("blue", version_of(e2e, e2e.v1))}
    assert e2e.cli("verify", payload["record"]).returncode == ExitCode.OK


def test_good_candidate_is_promoted_through_every_gate(e2e: E2EStack) -> None:
    started = time.monotonic()
    code, payload = e2e.promote("--ref", e2e.v2)
    wall = time.monotonic() - started
    assert code == ExitCode.OK, payload.get("run", {}).get("failure")
    record = json.loads(Path(payload["record"]).read_text())
    passed = {s["id"] for s in record["stages"] if s["status"] == "passed"}
    assert {
        "deploy",
        "smoke",
        "canary-10",
        "canary-50",
        "canary-100",
        "chaos",
        "switch",
        "post-check",
        "retire",
    } <= passed
    assert e2e.served() == {("green", version_of(e2e, e2e.v2))}
    assert e2e.target().health(Color.BLUE).live_replicas == 0  # old colour retired
    # Every canary request was attributed by the ingress (HAProxy's X-Immune-Served-By), none lost.
    samples = canary_samples(record, "canary-10")
    assert {"blue", "green"} <= {s["color"] for s in samples} <= {"blue", "green", "baseline", "unattributed"}
    assert all(str(s["served_by"]).startswith("ingress/") for s in samples if s["color"] != "unattributed")
    canary_10 = next(s for s in record["stages"] if s["id"] == "canary-10")
    attributed = canary_10["verdict"]["details"]["ingress_attribution"]
    assert attributed["requests_by_color"].get("unattributed", 0) <= attributed["unattributed_allowed"]
    # A fresh baseline of the stable release took the canary's share beside it (Kayenta), at 50 %
    # all of stable's, at 100 % through its own entry point; it is gone once the canary is over.
    assert "baseline" in {s["color"] for s in samples}
    assert {s["color"] for s in canary_samples(record, "canary-50")} - {"unattributed"} == {
        "green",
        "baseline",
    }
    assert "baseline" in {s["color"] for s in canary_samples(record, "canary-100")}
    events = [e["event"] for e in record["timeline"]]
    assert "baseline started" in events and "baseline stopped" in events
    assert_no_baseline_left(e2e)
    assert Path(payload["report"]).read_text().count("data:image/png;base64") >= 2
    print(
        f"\nFIGURE full local promotion wall time: {wall:.1f}s"
        f" (pipeline {record['metrics']['pipeline_wall_s']}s)"
    )


def test_regressed_candidate_is_rolled_back_at_first_canary_step(e2e: E2EStack) -> None:
    code, payload = e2e.promote("--ref", e2e.v1, "--candidate-env", "IMMUNE_FAULT_LATENCY_MS=400")
    assert code == ExitCode.GATE_FAILED, payload.get("run", {}).get("failure")
    assert payload["run"]["failure"]["step"] == "canary-10"
    assert payload["run"]["status"] == "rolled_back"
    target = e2e.target()
    weights = target.live_weights()
    assert weights["green-0"] == weights["green-1"] == 100 and weights["blue-0"] == weights["blue-1"] == 0
    assert e2e.served() == {("green", version_of(e2e, e2e.v2))}
    assert target.health(Color.BLUE).live_replicas == 0  # candidate scaled away
    assert_no_baseline_left(e2e)
    metrics = payload["metrics"]
    print(
        f"\nFIGURE SLO breach -> all traffic on stable: {metrics.get('slo_breach_to_stable_s')}s;"
        f" routing change {metrics['rollback_traffic_s']}s"
    )


def test_a_restarted_proxy_routes_as_before(e2e: E2EStack) -> None:
    """HAProxy killed (supervisord restarts it): weights set through the runtime API survive."""
    target = e2e.target()
    before = target.live_weights()
    target.supervisor.ctl("signal", "KILL", "haproxy")
    wait_for(
        lambda: (
            target.haproxy.is_up() and target.supervisor.process_states()["haproxy"]["statename"] == "RUNNING"
        ),
        30,
        "HAProxy to be restarted",
    )
    assert target.live_weights() == before
    wait_for(lambda: len(e2e.served(4)) == 1, 10, "the ingress to answer again")
    assert e2e.served() == {("green", version_of(e2e, e2e.v2))}


def test_tampered_record_fails_verification(e2e: E2EStack, tmp_path: Path) -> None:
    latest = e2e.cli("verify", "latest", "--stack", "e2e", "--json")
    assert latest.returncode == ExitCode.OK, latest.stdout
    record_path = Path(json.loads(latest.stdout)["record"])
    record = json.loads(record_path.read_text())
    record["failure"]["reason"] = "nothing to see here"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(record))
    result = e2e.cli("verify", str(tampered))
    assert result.returncode == ExitCode.VERIFY_FAILED
    assert "INVALID" in result.stdout


def test_pipeline_killed_mid_canary_recovers(e2e: E2EStack) -> None:
    command = e2e.promote_command("--ref", e2e.v1)
    run_file = Path(e2e.env["IMMUNE_STATE_DIR"]) / "pipeline" / "e2e" / "run.json"
    process = subprocess.Popen(command, env=e2e.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = e2e.target()
    try:

        def mid_canary() -> bool:
            run = json.loads(run_file.read_text())
            return run["current"] == "canary-50" and target.live_weights()["blue-0"] == 50

        wait_for(mid_canary, 300, "the pipeline to reach canary-50")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    # Nobody is in charge of a 50/50 split: the guard under supervisord puts it back on stable.
    wait_for(lambda: target.live_weights()["blue-0"] == 0, 20, "the guard to restore stable")
    assert e2e.served() == {("green", version_of(e2e, e2e.v2))}
    status = e2e.cli("status", "--stack", str(e2e.stack_file))
    assert "nobody is in charge" in status.stdout
    code, payload = e2e.promote("--ref", e2e.v1)
    assert code == ExitCode.OK, payload.get("run", {}).get("failure")
    record = json.loads(Path(payload["record"]).read_text())
    events = [e["event"] for e in record["timeline"]]
    assert any(e.startswith("guard") for e in events) and "resumed" in events
    assert e2e.served() == {("blue", version_of(e2e, e2e.v1))}


def test_rollback_returns_to_the_previous_record(e2e: E2EStack) -> None:
    result = e2e.cli("rollback", "--stack", str(e2e.stack_file), "--repo", str(e2e.repo), "--json")
    assert result.returncode == ExitCode.OK, result.stderr[-4000:]
    payload = json.loads(result.stdout)
    assert payload["run"]["kind"] == "rollback"
    assert e2e.served() == {("green", version_of(e2e, e2e.v2))}
