"""The `ci` stack (stacks/ci.yaml) promoted for real: every chaos experiment, dependencies stopped for real.

A private PostgreSQL/Redis/Kafka set (stopping the shared ones would break every other test) and a
private state dir and port block; otherwise the stack is stacks/ci.yaml as written: two replicas on the
real services and its six chaos experiments, the dependency ones included (stop Redis, Kafka and
PostgreSQL, 200 ms in front of Redis). The promotion is a first one (no stable to compare with, so no
canary steps): deploy, smoke, chaos, switch, post-check. The security gate is off here: it has its own
tests (tests/suite/gates), and findings in unrelated, in-progress code must not hide the chaos gate's result.

The services' scripts and the pipeline share one state dir (outside pytest's tmp_path, which PostgreSQL
cannot enter), so the chaos actions reach the private set's pid files and ports, never the shared set's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from immune_suite.paths import REPO_ROOT
from immune_suite.pipeline.exit_codes import ExitCode
from tests.services import ServiceSet
from tests.suite.local_stack import E2EStack, e2e_marks, local_ports, require_haproxy, snapshot_repo
from tests.support.ports import free_tcp_ports

pytestmark = e2e_marks(1200)

CI_STACK = REPO_ROOT / "stacks" / "ci.yaml"
DEPENDENCY_EXPERIMENTS = {
    "stop-redis": "redis",
    "stop-kafka": "kafka",
    "stop-postgres": "postgres",
    "dependency-latency": "redis",
}


@pytest.fixture(scope="module")
def ci_root() -> Iterator[Path]:
    require_haproxy()
    root = Path(tempfile.mkdtemp(prefix="immune-ci-e2e-"))
    root.chmod(0o755)  # the postgres OS user must reach its data dir below
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def ci_services(ci_root: Path) -> Iterator[tuple[ServiceSet, dict[str, str]]]:
    services = ServiceSet.private(("postgres", "redis", "kafka"), state_dir=ci_root / "state")
    try:
        yield services, services.start()
    finally:
        services.discard()


def test_ci_stack_promotion_runs_every_chaos_experiment_for_real(
    ci_root: Path, ci_services: tuple[ServiceSet, dict[str, str]]
) -> None:
    services, urls = ci_services
    v1, _ = snapshot_repo(ci_root / "repo")
    config: dict[str, Any] = yaml.safe_load(CI_STACK.read_text(encoding="utf-8"))
    assert config["dependencies"] == "services" and set(DEPENDENCY_EXPERIMENTS) <= set(
        config["chaos"]["experiments"]
    )
    config["local"] = local_ports()
    config["security"] = {"enabled": False}
    stack_file = ci_root / "ci.yaml"
    stack_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    [relocated] = free_tcp_ports(1)
    # Ports and state dir of the private set (services.overrides), its URLs (urls): every script the
    # chaos actions run acts on this set only.
    env = {**os.environ, **services.overrides, **urls, "IMMUNE_CHAOS_REDIS_RELOCATED_PORT": str(relocated)}

    stack = E2EStack(ci_root, ci_root / "repo", stack_file, env, config["local"])
    started = time.monotonic()
    try:
        result = stack.cli(
            "promote",
            "--stack",
            str(stack_file),
            "--repo",
            str(stack.repo),
            "--ref",
            v1,
            "--json",
            timeout=900,
        )
        wall = time.monotonic() - started
        payload = json.loads(result.stdout) if result.stdout.strip() else {}
        assert result.returncode == ExitCode.OK, (
            payload.get("run", {}).get("failure"),
            result.stderr[-6000:],
        )
        record = json.loads(Path(payload["record"]).read_text(encoding="utf-8"))
        [chaos] = [s for s in record["stages"] if s["id"] == "chaos"]
        assert chaos["status"] == "passed"
        timeline = {t["experiment"]: t for t in chaos["verdict"]["details"]["timeline"]}
        assert set(timeline) == set(config["chaos"]["experiments"])
        for name, entry in timeline.items():
            assert entry["passed"] and entry["status"] == "completed" and not entry["deviated"], name
            assert entry["recovery"], name  # every experiment measured its recovery
            actions = [a for a in entry["activities"] if a["phase"] == "method" and a["kind"] == "action"]
            assert actions and all(a["output"]["affected"] for a in actions), name
        for name, dependency in DEPENDENCY_EXPERIMENTS.items():
            fault = next(a for a in timeline[name]["activities"] if a["phase"] == "method")
            assert fault["output"]["affected"][0].startswith(dependency), (name, fault)
        # The private set is up again; the shared one was never touched (other sessions use it).
        assert all(services[d].is_running() for d in ("postgres", "redis", "kafka"))
        durations = {name: entry["duration_s"] for name, entry in timeline.items()}
        print(f"\nFIGURE ci stack promotion wall time: {wall:.1f}s; chaos experiments (s): {durations}")
    finally:
        stack.cli("down", "--stack", str(stack_file), timeout=120)
