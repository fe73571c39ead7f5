"""The chaos gate: journal judgement, `chaos validate` on every experiment, and real runs.

Real runs put service instances under a real supervisord (as the local stack does) and let the gate
kill them; the dependency experiment stops a private Redis through scripts/services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gate_services import MINI_SERVICE, REPO_ROOT, TOKEN, free_port, wait_ready

from immune_suite.gates.chaos import resolve_experiment, run_chaos_gate, write_var_file
from immune_suite.gates.chaos_journal import summarise
from immune_suite.verdict import Status

EXPERIMENT_FILES = sorted((REPO_ROOT / "chaos" / "experiments").rglob("*.json"))
BIN = Path(sys.executable).parent
IMMUNE_CORE = BIN / "immune-core"


def _silent(message: str, **_: object) -> None:
    print(message)


# --- journal judgement ------------------------------------------------------------------------------

def _journal(status: str = "completed", deviated: bool = False, probe_output: Any = 4.2,
             probe_status: str = "succeeded", rollback_status: str = "succeeded") -> dict[str, Any]:
    experiment = {"title": "t", "extensions": [{"name": "immune-gate", "measurements": [
        {"probe": "recovery", "name": "recovery_s", "comparator": "<", "threshold": 30, "unit": "s"}]}]}
    run = {"activity": {"type": "probe", "name": "recovery"}, "status": probe_status, "output": probe_output,
           "start": "2026-01-01T00:00:01", "end": "2026-01-01T00:00:05", "duration": 4.0}
    if probe_status == "failed":
        run["exception"] = ["Traceback ...\n", "ChaosActivityError: not recovered within 30s\n"]
    return {"experiment": experiment, "status": status, "deviated": deviated, "run": [run],
            "steady_states": {"before": {"steady_state_met": True, "probes": []},
                              "after": {"steady_state_met": not deviated, "probes": []}},
            "rollbacks": [{"activity": {"type": "action", "name": "restart"}, "status": rollback_status}]}


def test_a_completed_undeviated_journal_passes_with_its_measurement() -> None:
    summary = summarise(_journal(), "kill")
    assert summary.passed
    [measurement] = summary.measurements
    assert (measurement.name, measurement.value, measurement.threshold) == ("kill: recovery_s", 4.2, 30.0)


@pytest.mark.parametrize(("journal", "reason"), [
    (_journal(deviated=True, status="failed"), "steady state deviated"),
    (_journal(probe_output=31.0), "recovery_s=31.0"),
    (_journal(probe_status="failed", probe_output=None), "not recovered within 30s"),
    (_journal(rollback_status="failed"), "rollback action 'restart' failed"),
    (_journal(status="interrupted"), "status interrupted"),
])
def test_failures_name_their_reason(journal: dict[str, Any], reason: str) -> None:
    summary = summarise(journal, "kill")
    assert not summary.passed
    assert any(reason in r for r in summary.reasons()), summary.reasons()


def test_the_var_file_never_holds_the_token(tmp_path: Path) -> None:
    config = {"candidate_url": "http://x", "api_token": "s3cret",
              "services_env": {"IMMUNE_DATABASE_URL": "postgresql://u:pw@h/db"}}
    path = write_var_file(config, tmp_path / "v.json")
    text = path.read_text()
    assert "s3cret" not in text and "pw@" not in text and "http://x" in text


def test_experiments_are_found_by_name() -> None:
    assert resolve_experiment("kill-leader").parent.name == "local"
    assert resolve_experiment("k8s-scale-redis-to-zero").parent.name == "kubernetes"
    with pytest.raises(FileNotFoundError):
        resolve_experiment("no-such-experiment")


def test_unknown_experiment_fails_the_gate(tmp_path: Path) -> None:
    verdict = run_chaos_gate({}, tmp_path, ["no-such-experiment"], _silent)
    assert verdict.status is Status.FAIL
    assert run_chaos_gate({}, tmp_path, [], _silent).status is Status.FAIL


# --- chaos validate ---------------------------------------------------------------------------------

@pytest.mark.parametrize("experiment", EXPERIMENT_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_chaos_validate(experiment: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(BIN / "chaos"), "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "validate",
         str(experiment)], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "chaos")},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "experiment syntax and semantic look valid" in completed.stdout + completed.stderr


# --- real runs under supervisord --------------------------------------------------------------------

SUPERVISOR_HEAD = """[unix_http_server]
file={root}/supervisor.sock
[supervisord]
logfile={root}/supervisord.log
pidfile={root}/supervisord.pid
directory={root}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{root}/supervisor.sock
"""


class Supervised:
    def __init__(self, root: Path, programs: dict[str, tuple[list[str], dict[str, str]]]) -> None:
        self.root = root
        self.conf = root / "supervisord.conf"
        sections = [SUPERVISOR_HEAD.format(root=root)]
        self.urls: dict[str, str] = {}
        for name, (command, env) in programs.items():
            environment = ",".join(f'{k}="{v}"' for k, v in env.items())
            sections.append(f"[program:{name}]\ncommand={' '.join(command)}\nenvironment={environment}\n"
                            f"autorestart=true\nstartsecs=1\nstopasgroup=true\nkillasgroup=true\n")
            self.urls[name] = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
        self.conf.write_text("\n".join(sections))
        subprocess.run([str(BIN / "supervisord"), "-c", str(self.conf)], check=True, timeout=30)
        for url in self.urls.values():
            wait_ready(url, timeout_s=60)

    def config(self, **extra: Any) -> dict[str, Any]:
        programs, urls = list(self.urls), list(self.urls.values())
        return {"base_url": urls[0], "candidate_url": urls[-1], "stable_url": urls[0], "api_token": TOKEN,
                "supervisor_conf": str(self.conf), "candidate_programs": programs,
                "candidate_instance_urls": urls, "services_dir": str(REPO_ROOT / "scripts" / "services"),
                "services_env": {}, **extra}

    def shutdown(self) -> None:
        subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), "shutdown"], timeout=60,
                       check=False)


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(programs: dict[str, tuple[list[str], dict[str, str]]]) -> Supervised:
        supervised = Supervised(tmp_path, programs)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        supervised.shutdown()


def _service_instances(tmp_path: Path, count: int, extra_env: dict[str, str] | None = None
                       ) -> dict[str, tuple[list[str], dict[str, str]]]:
    """`count` real service instances (immune-core serve) sharing one embedded data dir."""
    programs = {}
    for index in range(count):
        env = {"IMMUNE_API_TOKENS": TOKEN, "IMMUNE_DATA_DIR": str(tmp_path / "data"),
               "IMMUNE_INSTANCE_ID": f"green-{index}", "IMMUNE_DEPLOYMENT_COLOR": "green",
               "IMMUNE_LOG_LEVEL": "WARNING", **(extra_env or {})}
        programs[f"immune-green-{index}"] = (
            [str(IMMUNE_CORE), "serve", "--host", "127.0.0.1", "--port", str(free_port())], env)
    return programs


requires_service = pytest.mark.skipif(not IMMUNE_CORE.exists(), reason="immune-core is not installed")


@pytest.mark.slow
@requires_service
def test_killing_an_instance_and_the_leader_recovers(supervise: Callable[..., Supervised],
                                                     tmp_path: Path) -> None:
    stack = supervise(_service_instances(tmp_path, 2))
    verdict = run_chaos_gate(stack.config(), tmp_path / "out", ["kill-candidate-instance", "kill-leader"],
                             _silent)
    assert verdict.status is Status.PASS, verdict.summary
    values = {m.name: m for m in verdict.measurements}
    assert values["kill-candidate-instance: recovery_s"].value is not None
    assert values["kill-leader: reelection_s"].passed
    timeline = verdict.details["timeline"]
    assert [t["experiment"] for t in timeline] == ["kill-candidate-instance", "kill-leader"]
    assert all(a["status"] == "succeeded" for t in timeline for a in t["activities"])
    for artifact in verdict.artifacts:
        assert TOKEN not in Path(artifact.path).read_text(errors="replace")
    assert TOKEN not in json.dumps(verdict.to_dict())


@pytest.mark.slow
def test_a_service_that_never_re_elects_fails_kill_leader(supervise: Callable[..., Supervised],
                                                          tmp_path: Path) -> None:
    # The mini service always claims leadership under term 1: after the kill nobody takes a newer term.
    programs = {f"mini-{i}": ([sys.executable, str(MINI_SERVICE), "--port", str(free_port())],
                              {"IMMUNE_API_TOKENS": TOKEN}) for i in range(2)}
    stack = supervise(programs)
    verdict = run_chaos_gate(stack.config(), tmp_path / "out", ["kill-leader"], _silent)
    assert verdict.status is Status.FAIL
    assert "no new leader within 10s" in verdict.summary


DEPENDENCY_EXPERIMENTS = {
    "redis": ["stop-redis", "dependency-latency"],
    "postgres": ["stop-postgres"],
    "kafka": ["stop-kafka"],
}


@pytest.mark.slow
@pytest.mark.integration
@requires_service
@pytest.mark.parametrize("dependency", list(DEPENDENCY_EXPERIMENTS))
def test_stopping_a_dependency_degrades_gracefully_and_loses_nothing(
        dependency: str, private_services: Callable[..., Any], tmp_path: Path) -> None:
    services = private_services(dependency)
    port = free_port()
    env = {**os.environ, **services.env(), "IMMUNE_API_TOKENS": TOKEN,
           "IMMUNE_DATA_DIR": str(tmp_path / "data"), "IMMUNE_LOG_LEVEL": "WARNING"}
    if dependency == "postgres":
        subprocess.run([str(IMMUNE_CORE), "migrate"], env=env, check=True, timeout=120, capture_output=True)
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen([str(IMMUNE_CORE), "serve", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout_s=120)
        config = {"candidate_url": url, "base_url": url, "api_token": TOKEN,
                  "services_dir": str(REPO_ROOT / "scripts" / "services"),
                  "services_env": {**services.overrides,
                                   "IMMUNE_CHAOS_REDIS_RELOCATED_PORT": str(free_port())}}
        experiments = DEPENDENCY_EXPERIMENTS[dependency]
        verdict = run_chaos_gate(config, tmp_path / "out", experiments, _silent)
        assert verdict.status is Status.PASS, verdict.summary
        names = {m.name for m in verdict.measurements}
        assert names >= {f"{name}: recovery_s" for name in experiments}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
