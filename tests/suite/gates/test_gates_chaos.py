"""The chaos gate: journal judgement, `chaos validate` on every experiment, and real runs.

Real runs put service instances under a real supervisord (as the local stack does) and let the gate
kill them; the dependency experiment stops a private Redis through scripts/services.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes.config import kube_config

from immune_suite.gates.chaos import resolve_experiment, run_chaos_gate, write_var_file
from immune_suite.gates.chaos_journal import summarise
from immune_suite.verdict import Status
from tests.suite.gates.fake_kube_api import Cluster, FakeKubeApi
from tests.suite.gates.gate_services import (
    IMMUNE_CORE,
    MINI_SERVICE,
    REPO_ROOT,
    TOKEN,
    serving_immune_core,
    wait_ready,
)
from tests.support.ports import free_port

EXPERIMENT_FILES = sorted((REPO_ROOT / "chaos" / "experiments").rglob("*.json"))
BIN = Path(sys.executable).parent


def _silent(message: str, **_: object) -> None:
    print(message)


# The bad cases whose service never recovers would sit out the experiments' production waits (readiness
# after the fault 30-120 s, the event drain 60-120 s, instance readiness 30 s) before failing. They get
# these short ones instead (configuration variables of every experiment); the good cases keep the defaults.
GIVE_UP_S = 5
NEVER_RECOVERS = {"recovery_timeout_s": GIVE_UP_S, "drain_s": GIVE_UP_S, "ready_within_s": GIVE_UP_S}


# --- journal judgement ------------------------------------------------------------------------------


def _journal(
    status: str = "completed",
    deviated: bool = False,
    probe_output: Any = 4.2,
    probe_status: str = "succeeded",
    rollback_status: str = "succeeded",
) -> dict[str, Any]:
    experiment = {
        "title": "t",
        "method": [{"type": "probe", "name": "recovery"}],
        "extensions": [
            {
                "name": "immune-gate",
                "measurements": [
                    {
                        "probe": "recovery",
                        "name": "recovery_s",
                        "comparator": "<",
                        "threshold": 30,
                        "unit": "s",
                    }
                ],
            }
        ],
    }
    run = {
        "activity": {"type": "probe", "name": "recovery"},
        "status": probe_status,
        "output": probe_output,
        "start": "2026-01-01T00:00:01",
        "end": "2026-01-01T00:00:05",
        "duration": 4.0,
    }
    if probe_status == "failed":
        run["exception"] = ["Traceback ...\n", "ChaosActivityError: not recovered within 30s\n"]
    return {
        "experiment": experiment,
        "status": status,
        "deviated": deviated,
        "run": [run],
        "steady_states": {
            "before": {"steady_state_met": True, "probes": []},
            "after": {"steady_state_met": not deviated, "probes": []},
        },
        "rollbacks": [{"activity": {"type": "action", "name": "restart"}, "status": rollback_status}],
    }


def test_a_completed_undeviated_journal_passes_with_its_measurement() -> None:
    summary = summarise(_journal(), "kill")
    assert summary.passed
    [measurement] = summary.measurements
    assert (measurement.name, measurement.value, measurement.threshold) == ("kill: recovery_s", 4.2, 30.0)


@pytest.mark.parametrize(
    ("journal", "reason"),
    [
        (_journal(deviated=True, status="failed"), "steady state deviated"),
        (_journal(probe_output=31.0), "recovery_s=31.0"),
        (_journal(probe_status="failed", probe_output=None), "not recovered within 30s"),
        (_journal(rollback_status="failed"), "rollback action 'restart' failed"),
        (_journal(status="interrupted"), "status interrupted"),
    ],
)
def test_failures_name_their_reason(journal: dict[str, Any], reason: str) -> None:
    summary = summarise(journal, "kill")
    assert not summary.passed
    assert any(reason in r for r in summary.reasons()), summary.reasons()


def _method_journal(*entries: dict[str, Any], declared: int | None = None) -> dict[str, Any]:
    """A completed, undeviated journal whose method ran `entries` (activity + output)."""
    run = [
        {"activity": e["activity"], "status": e.get("status", "succeeded"), "output": e.get("output")}
        for e in entries
    ]
    method = [e["activity"] for e in entries]
    if declared is not None:
        method += [{"type": "probe", "name": f"never-ran-{i}"} for i in range(declared - len(entries))]
    return {
        "experiment": {"title": "t", "method": method},
        "status": "completed",
        "deviated": False,
        "run": run,
        "steady_states": {},
        "rollbacks": [],
    }


KILL = {"activity": {"type": "action", "name": "kill"}, "output": {"affected": ["immune-green-0 (pid 7)"]}}
UNGRACEFUL_0 = {"type": "range", "range": [0, 0], "target": "ungraceful"}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        # Chaos Toolkit ignores a method probe's tolerance; the gate does not.
        (
            {"activity": {"type": "probe", "name": "alive", "tolerance": True}, "output": False},
            "probe 'alive' failed: output False not within tolerance True",
        ),
        (
            {
                "activity": {"type": "probe", "name": "events", "tolerance": UNGRACEFUL_0},
                "output": {"accepted": 20, "ungraceful": 80},
            },
            "probe 'events' failed: output",
        ),
        (
            {
                "activity": {"type": "probe", "name": "http-ready", "tolerance": 200},
                "output": {"status": 503, "headers": {}, "body": ""},
            },
            "not within tolerance 200",
        ),
        (
            {"activity": {"type": "probe", "name": "looks"}, "output": True},
            "probe 'looks' failed: judges nothing",
        ),
        # Actions that hit nothing.
        ({"activity": {"type": "action", "name": "kill"}, "output": {"affected": []}}, "affected nothing"),
        ({"activity": {"type": "action", "name": "terminate"}, "output": []}, "the selector matched nothing"),
        ({"activity": {"type": "action", "name": "scale"}, "output": None}, "reports no effect"),
    ],
)
def test_a_method_activity_that_chaos_toolkit_lets_pass_fails_the_gate(
    entry: dict[str, Any], reason: str
) -> None:
    summary = summarise(_method_journal(KILL, entry), "x")
    assert summary.status == "completed" and not summary.deviated
    assert not summary.passed
    assert any(reason in r for r in summary.reasons()), summary.reasons()


def test_method_probes_within_their_tolerance_and_actions_with_effect_pass() -> None:
    summary = summarise(
        _method_journal(
            KILL,
            {"activity": {"type": "action", "name": "terminate"}, "output": ["immune-core-1"]},
            {"activity": {"type": "probe", "name": "alive", "tolerance": True}, "output": True},
            {
                "activity": {"type": "probe", "name": "events", "tolerance": UNGRACEFUL_0},
                "output": {"accepted": 100, "ungraceful": 0},
            },
            {
                "activity": {"type": "probe", "name": "http-ready", "tolerance": 200},
                "output": {"status": 200, "headers": {}, "body": ""},
            },
        ),
        "x",
    )
    assert summary.passed, summary.reasons()


def test_a_method_that_did_not_run_to_its_end_fails() -> None:
    summary = summarise(_method_journal(KILL, declared=3), "x")
    assert not summary.passed
    assert any("method incomplete: 1 of 3" in r for r in summary.reasons()), summary.reasons()


def test_chaos_toolkit_itself_passes_a_method_probe_out_of_tolerance_and_the_gate_fails_it(
    tmp_path: Path,
) -> None:
    """The real `chaos run`: the journal says completed and not deviated, the gate says failed."""
    closed = f"http://127.0.0.1:{free_port()}"
    experiment = {
        "version": "1.0.0",
        "title": "a method probe out of tolerance",
        "description": "gate test",
        "method": [
            {
                "type": "probe",
                "name": "alive-during-outage",
                "tolerance": True,
                "provider": {
                    "type": "python",
                    "module": "immune_chaos.local",
                    "func": "service_alive",
                    "arguments": {"url": closed},
                },
            }
        ],
    }
    path = tmp_path / "out-of-tolerance.json"
    path.write_text(json.dumps(experiment))
    verdict = run_chaos_gate({}, tmp_path / "out", [str(path)], _silent)
    [entry] = verdict.details["timeline"]
    assert (entry["status"], entry["deviated"]) == ("completed", False)  # Chaos Toolkit's own view
    assert verdict.status is Status.FAIL
    assert "not within tolerance True" in verdict.summary


@pytest.mark.parametrize(
    "probe",
    [
        "readiness_recovery_seconds('http://127.0.0.1:9', timeout_s=0)",
        "reelection_seconds('/nonexistent.conf', timeout_s=0)",
    ],
)
def test_recovery_probes_need_a_fault_injected_in_the_same_run(probe: str) -> None:
    """The fault timer starts at a fault action, never at the import of immune_chaos.local."""
    code = (
        "import immune_chaos.local as c\n"
        f"try:\n    c.{probe}\n"
        "except c.ChaosActivityError as e:\n    print('raised', e)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "chaos")},
        check=True,
    )
    assert "no fault was injected before this probe" in completed.stdout


@pytest.mark.parametrize(
    ("stats", "reason"),
    [
        # A per-process counter only (what /api/v1/stats had before): no database-wide figure, no pass.
        ({"events_accepted": 5, "events_stored": 5}, "stats lack database-wide figures"),
        ({"events_acknowledged": 5, "events_stored": 4, "events_processed": 4}, "'events_acknowledged': 5"),
        ({"events_acknowledged": 5, "events_stored": 5, "events_processed": 3}, "'events_processed': 3"),
    ],
)
def test_no_event_lost_needs_database_wide_figures_that_agree(
    stats: dict[str, int], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "chaos"))
    from immune_chaos import local

    monkeypatch.setattr(local, "_RUN_EVENTS", {"acknowledged_to_us": 0, "stored_at_start": None})

    class Stats(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(stats).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stats)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(local.ChaosActivityError, match="events lost or not drained") as raised:
            local.events_consistent(url, TOKEN, drain_s=0.5)
        assert reason in str(raised.value)
        stats.update({"events_acknowledged": 5, "events_stored": 5, "events_processed": 5})
        assert local.events_consistent(url, TOKEN, drain_s=0.5)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("failures_first", "within_s", "consecutive", "alive"),
    [
        (0, 0.0, 1, True),  # good case: answers at once
        (3, 0.0, 1, False),  # one try, routed to the killed pod: not alive
        (3, 5.0, 1, True),  # the router drops the killed pod within the wait: alive
        (6, 5.0, 5, True),  # ... and then answers 5 times in a row
        (10_000, 1.0, 1, False),  # bad case: nothing serves within the wait
        (-1, 2.0, 3, False),  # bad case: a dead pod still in the round robin (every other answer fails)
    ],
)
def test_service_alive_waits_for_the_router_to_drop_a_killed_pod(
    failures_first: int, within_s: float, consecutive: int, alive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "chaos"))
    from immune_chaos import local

    answered: list[int] = []

    class Router(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # 502: the router's "bad gateway"; -1: a round robin over a live and a killed pod, for ever.
            failing = len(answered) % 2 == 0 if failures_first < 0 else len(answered) < failures_first
            status = 502 if failing else 200
            answered.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Router)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert local.service_alive(url, within_s=within_s, consecutive=consecutive) is alive, answered
    finally:
        server.shutdown()
        server.server_close()


def test_the_var_file_never_holds_the_token(tmp_path: Path) -> None:
    config = {
        "candidate_url": "http://x",
        "api_token": "s3cret",
        "services_env": {"IMMUNE_DATABASE_URL": "postgresql://u:pw@h/db"},
    }
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
        [
            str(BIN / "chaos"),
            "--no-version-check",
            "--log-file",
            str(tmp_path / "chaos.log"),
            "validate",
            str(experiment),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "chaos")},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "experiment syntax and semantic look valid" in completed.stdout + completed.stderr


@pytest.mark.parametrize("experiment", EXPERIMENT_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_waits_are_declared_variables_whose_defaults_are_the_production_values(experiment: Path) -> None:
    """Every `${var}` an experiment uses is declared in its configuration, and each measured probe waits
    (`timeout_s`, a literal or a variable's default) exactly the gate's threshold for it: a run without
    overrides judges as documented; only the tests of services that never recover shorten the waits."""
    text = experiment.read_text()
    document = json.loads(text)
    configuration = document["configuration"]
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used <= set(configuration), used - set(configuration)
    probes = {a["name"]: a for a in document["method"]}
    measurements = [m for e in document["extensions"] for m in e["measurements"]]
    assert measurements
    for measurement in measurements:
        wait = probes[measurement["probe"]]["provider"]["arguments"]["timeout_s"]
        if isinstance(wait, str):
            declared = configuration[re.fullmatch(r"\$\{(\w+)\}", wait)[1]]  # type: ignore[index]
            assert declared["env_var_type"] == "int"
            wait = declared["default"]
        assert float(wait) == float(measurement["threshold"]), measurement


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
    def __init__(
        self, root: Path, programs: dict[str, tuple[list[str], dict[str, str]]], autorestart: bool = True
    ) -> None:
        self.root = root
        self.conf = root / "supervisord.conf"
        sections = [SUPERVISOR_HEAD.format(root=root)]
        self.urls: dict[str, str] = {}
        for name, (command, env) in programs.items():
            environment = ",".join(f'{k}="{v}"' for k, v in env.items())
            sections.append(
                f"[program:{name}]\ncommand={' '.join(command)}\nenvironment={environment}\n"
                f"autorestart={str(autorestart).lower()}\nstartsecs=1\nstopasgroup=true\n"
                "killasgroup=true\n"
            )
            self.urls[name] = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
        self.conf.write_text("\n".join(sections))
        subprocess.run([str(BIN / "supervisord"), "-c", str(self.conf)], check=True, timeout=30)
        for url in self.urls.values():
            wait_ready(url, timeout_s=60)

    def config(self, **extra: Any) -> dict[str, Any]:
        programs, urls = list(self.urls), list(self.urls.values())
        return {
            "base_url": urls[0],
            "candidate_url": urls[-1],
            "stable_url": urls[0],
            "api_token": TOKEN,
            "supervisor_conf": str(self.conf),
            "candidate_programs": programs,
            "candidate_instance_urls": urls,
            "services_dir": str(REPO_ROOT / "scripts" / "services"),
            "services_env": {},
            **extra,
        }

    def shutdown(self) -> None:
        subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.conf), "shutdown"], timeout=60, check=False
        )


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(programs: dict[str, tuple[list[str], dict[str, str]]], autorestart: bool = True) -> Supervised:
        supervised = Supervised(tmp_path, programs, autorestart)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        supervised.shutdown()


def _service_instances(
    tmp_path: Path, count: int, extra_env: dict[str, str] | None = None
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """`count` real service instances (immune-core serve) sharing one embedded data dir."""
    programs = {}
    for index in range(count):
        env = {
            "IMMUNE_API_TOKENS": TOKEN,
            "IMMUNE_DATA_DIR": str(tmp_path / "data"),
            "IMMUNE_INSTANCE_ID": f"green-{index}",
            "IMMUNE_DEPLOYMENT_COLOR": "green",
            "IMMUNE_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        programs[f"immune-green-{index}"] = (
            [str(IMMUNE_CORE), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
            env,
        )
    return programs


def _mini_instances(count: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """`count` mini services (tests/suite/gates/mini_service.py) named `mini-<i>`, each on a free port."""
    return {
        f"mini-{i}": (
            [sys.executable, str(MINI_SERVICE), "--port", str(free_port())],
            {"IMMUNE_API_TOKENS": TOKEN},
        )
        for i in range(count)
    }


requires_service = pytest.mark.skipif(not IMMUNE_CORE.exists(), reason="immune-core is not installed")


# serial: the gate wants a new leader within 10 s of real time.
@pytest.mark.slow
@pytest.mark.serial
@requires_service
def test_killing_an_instance_and_the_leader_recovers(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    stack = supervise(_service_instances(tmp_path, 2))
    verdict = run_chaos_gate(
        stack.config(), tmp_path / "out", ["kill-candidate-instance", "kill-leader"], _silent
    )
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
def test_a_service_that_never_re_elects_fails_kill_leader(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    # The mini service always claims leadership under term 1: after the kill nobody takes a newer term.
    programs = _mini_instances(2)
    stack = supervise(programs)
    verdict = run_chaos_gate(stack.config(), tmp_path / "out", ["kill-leader"], _silent)
    assert verdict.status is Status.FAIL
    assert "no new leader within 10s" in verdict.summary


@pytest.mark.slow
def test_an_instance_that_is_not_restarted_fails_kill_candidate_instance(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    """supervisord configured not to restart: the instance stays dead, the experiment fails."""
    programs = _mini_instances(2)
    stack = supervise(programs, autorestart=False)
    verdict = run_chaos_gate(
        stack.config(**NEVER_RECOVERS), tmp_path / "out", ["kill-candidate-instance"], _silent
    )
    assert verdict.status is Status.FAIL
    assert f"mini-0 not recovered within {GIVE_UP_S}s of the kill" in verdict.summary


@pytest.mark.slow
def test_a_kill_that_kills_nothing_fails_the_experiment(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    programs = _mini_instances(2)
    stack = supervise(programs)
    subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(stack.conf), "stop", "mini-0"],
        check=True,
        timeout=60,
        capture_output=True,
    )
    verdict = run_chaos_gate(
        stack.config(candidate_instance_urls=[stack.urls["mini-1"]]),
        tmp_path / "out",
        ["kill-candidate-instance"],
        _silent,
    )
    assert verdict.status is Status.FAIL
    assert "mini-0 is not running" in verdict.summary and "nothing to kill" in verdict.summary
    [entry] = verdict.details["timeline"]
    assert not any(
        a["name"] == "candidate-recovery-seconds" and a["status"] == "succeeded" for a in entry["activities"]
    )


# --- dependencies: real PostgreSQL/Redis/Kafka of our own ------------------------------------------


@pytest.fixture(scope="module")
def dependencies() -> Iterator[Any]:
    """One private PostgreSQL/Redis/Kafka set for the module (experiments stop and start them)."""
    from tests.services import ServiceSet

    services = ServiceSet.private(("postgres", "redis", "kafka"))
    try:
        services.start()
        yield services
    finally:
        services.discard()


@pytest.fixture
def deps(dependencies: Any) -> Any:
    dependencies.start()  # idempotent: whatever an earlier test's experiment left stopped runs again
    return dependencies


def _dependency_config(services: Any, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "candidate_url": url,
        "base_url": url,
        "candidate_instance_urls": [url],
        "api_token": TOKEN,
        "services_dir": str(REPO_ROOT / "scripts" / "services"),
        "services_env": {**services.overrides, "IMMUNE_CHAOS_REDIS_RELOCATED_PORT": str(free_port())},
        **extra,
    }


@contextlib.contextmanager
def _mini_with_dependency(port: str, mode: str) -> Iterator[str]:
    """The mini service, ready only while 127.0.0.1:`port` accepts connections (none: always ready)."""
    url_port = free_port()
    env = {
        **os.environ,
        "IMMUNE_API_TOKENS": TOKEN,
        "IMMUNE_FAULT_DEPENDENCY_PORT": port,
        "IMMUNE_FAULT_DEPENDENCY_MODE": mode,
    }
    process = subprocess.Popen([sys.executable, str(MINI_SERVICE), "--port", str(url_port)], env=env)
    try:
        url = f"http://127.0.0.1:{url_port}"
        wait_ready(url, timeout_s=60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


PORT_OF = {"redis": "IMMUNE_REDIS_PORT", "postgres": "IMMUNE_PG_PORT", "kafka": "IMMUNE_KAFKA_PORT"}


# Each dependency experiment against a service that mishandles the outage, and what the gate says.
UNRECOVERED = [
    # A client that never reconnects: never ready again after Redis returns.
    ("stop-redis", "redis", "never-recover", f"not ready within {GIVE_UP_S}s"),
    # The process dies (liveness fails) without PostgreSQL: the method probe's tolerance catches it.
    (
        "stop-postgres",
        "postgres",
        "dead-without",
        "'candidate-instances-alive-without-postgres' failed: output False",
    ),
    # Events acknowledged while Kafka is down are never stored: the steady state after deviates.
    ("stop-kafka", "kafka", "lose-without", "steady state deviated"),
    # The latency's short relocation of Redis is never recovered from.
    ("dependency-latency", "redis", "never-recover", f"not ready within {GIVE_UP_S}s"),
]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(
    ("experiment", "dependency", "mode", "reason"), UNRECOVERED, ids=[u[0] for u in UNRECOVERED]
)
def test_a_service_that_mishandles_a_dependency_outage_fails(
    experiment: str, dependency: str, mode: str, reason: str, deps: Any, tmp_path: Path
) -> None:
    with _mini_with_dependency(deps.overrides[PORT_OF[dependency]], mode) as url:
        config = _dependency_config(deps, url, **NEVER_RECOVERS)
        verdict = run_chaos_gate(config, tmp_path / "out", [experiment], _silent)
        assert verdict.status is Status.FAIL
        assert reason in verdict.summary, verdict.summary
    assert deps[dependency].is_running()  # the rollback brought it back


@pytest.mark.slow
@pytest.mark.integration
def test_stopping_a_dependency_that_is_already_stopped_fails(deps: Any, tmp_path: Path) -> None:
    deps["redis"].stop()
    with _mini_with_dependency("", "") as url:
        verdict = run_chaos_gate(_dependency_config(deps, url), tmp_path / "out", ["stop-redis"], _silent)
    assert verdict.status is Status.FAIL
    assert "redis is not running: stopping it would affect nothing" in verdict.summary


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
    dependency: str, deps: Any, tmp_path: Path
) -> None:
    """The real service on the real dependencies: every experiment passes, with its recovery time."""
    env = {
        **os.environ,
        **deps.env(),
        "IMMUNE_API_TOKENS": TOKEN,
        "IMMUNE_DATA_DIR": str(tmp_path / "data"),
        "IMMUNE_LOG_LEVEL": "WARNING",
    }
    subprocess.run([str(IMMUNE_CORE), "migrate"], env=env, check=True, timeout=120, capture_output=True)
    with serving_immune_core(env, tmp_path / "service.log", timeout_s=120) as service:
        experiments = DEPENDENCY_EXPERIMENTS[dependency]
        verdict = run_chaos_gate(
            _dependency_config(deps, service.url), tmp_path / "out", experiments, _silent
        )
        assert verdict.status is Status.PASS, verdict.summary
        names = {m.name for m in verdict.measurements}
        assert names >= {f"{name}: recovery_s" for name in experiments}


# --- Kubernetes experiments against a fake Kubernetes API (a real local HTTP server) -----------------

CANDIDATE_LABELS = {"app.kubernetes.io/name": "immune-core", "immune.vertice.dev/color": "green"}
SELECTOR = ",".join(f"{k}={v}" for k, v in CANDIDATE_LABELS.items())


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKubeApi]:
    cluster = Cluster(namespace="immune-test")
    cluster.add_pods(2, CANDIDATE_LABELS)
    for name in ("redis", "postgres", "kafka"):
        cluster.add_statefulset(name)
    api = FakeKubeApi(cluster, tmp_path)
    yield api
    api.close()


def _k8s_config(api: FakeKubeApi, url: str, **extra: Any) -> dict[str, Any]:
    # alive_observe_s: the experiments watch the pods 40 s (three missed liveness probes); 3 s here.
    # outage_pause_s: 10 s for a real cluster to notice the scale-down; the fake API applies it in the call.
    return {
        "candidate_url": url,
        "base_url": url,
        "api_token": TOKEN,
        "namespace": api.cluster.namespace,
        "alive_observe_s": 3,
        "outage_pause_s": 2,
        "candidate_label_selector": SELECTOR,
        "services_env": {"KUBECONFIG": str(api.kubeconfig)},
        **extra,
    }


K8S_DEPENDENCIES = ["redis", "postgres", "kafka"]


@pytest.mark.slow
def test_kubernetes_experiments_pass_on_a_service_that_recovers(kube: FakeKubeApi, tmp_path: Path) -> None:
    # Not k8s-scale-redis-to-zero: its reconnection probe asks each pod's /health/ready through the API
    # server's pod proxy, which this fake does not serve; tests/cluster/test_chaos.py runs it for real.
    experiments = [
        "k8s-terminate-candidate-pod",
        *(f"k8s-scale-{d}-to-zero" for d in K8S_DEPENDENCIES if d != "redis"),
    ]
    with _mini_with_dependency(str(kube.cluster.statefulsets["redis"].port), "") as url:
        kube.cluster.liveness_url = f"{url}/health/live"  # alive throughout: no restart
        verdict = run_chaos_gate(_k8s_config(kube, url), tmp_path / "out", experiments, _silent)
    assert verdict.status is Status.PASS, verdict.summary
    assert len(kube.cluster.deleted) == 1
    assert all(s.replicas == 1 for s in kube.cluster.statefulsets.values())
    recovery = {m.name: m.value for m in verdict.measurements if m.name.endswith("recovery_s")}
    assert set(recovery) == {f"{e}: recovery_s" for e in experiments}
    assert all(v is not None for v in recovery.values())


@pytest.mark.slow
def test_a_selector_that_matches_no_pod_fails_k8s_terminate(kube: FakeKubeApi, tmp_path: Path) -> None:
    with _mini_with_dependency("", "") as url:
        config = _k8s_config(kube, url, candidate_label_selector="app.kubernetes.io/name=nothing-here")
        verdict = run_chaos_gate(config, tmp_path / "out", ["k8s-terminate-candidate-pod"], _silent)
    assert verdict.status is Status.FAIL
    # The steady state (pods of that selector running) already refuses to start the experiment.
    assert "steady-state-before probe 'candidate-pods-running' not met" in verdict.summary
    assert kube.cluster.deleted == []


def test_the_kubernetes_actions_refuse_to_affect_nothing(
    kube: FakeKubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wrappers themselves: an empty selector and a no-op scale raise; real effects start the timer."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    # The client reads KUBECONFIG once, when kubernetes.config is first imported (by any earlier test of
    # this process): point its default at the fake API as well (a `chaos` process reads it at start).
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.kubeconfig))
    monkeypatch.syspath_prepend(str(REPO_ROOT / "chaos"))
    from immune_chaos import k8s, local

    namespace = kube.cluster.namespace
    with pytest.raises(local.ChaosActivityError, match="nothing was terminated"):
        k8s.terminate_pods("app.kubernetes.io/name=nothing-here", ns=namespace)
    with pytest.raises(local.ChaosActivityError, match="already has 1 replicas"):
        k8s.scale_statefulset("redis", 1, ns=namespace)
    with pytest.raises(local.ChaosActivityError, match="cannot be read: 404"):
        k8s.scale_statefulset("no-such-statefulset", 0, ns=namespace)
    result = k8s.terminate_pods(SELECTOR, ns=namespace)
    assert result["affected"] == kube.cluster.deleted and len(result["affected"]) == 1
    assert local.current_fault("test").kind == "terminate-pods"
    assert k8s.scale_statefulset("redis", 0, ns=namespace)["affected"] == ["immune-test/redis: 1 -> 0"]
    assert local.current_fault("test").kind == "scale-to-zero"
    assert kube.cluster.statefulsets["redis"].listener is None
    assert k8s.ensure_statefulset_replicas("redis", 1, ns=namespace)["affected"]
    assert k8s.ensure_statefulset_replicas("redis", 1, ns=namespace)["affected"] == []


@pytest.mark.slow
def test_a_pod_that_is_not_replaced_fails_k8s_terminate(kube: FakeKubeApi, tmp_path: Path) -> None:
    """The candidate depends on its pods: with no replacement it never serves again (30 s in production)."""
    kube.cluster.replace_deleted_pods = False
    pods = kube.cluster.add_statefulset("candidate-pods")  # its port is open while no pod was lost
    kube.cluster.pods_listener = pods
    with _mini_with_dependency(str(pods.port), "never-recover") as url:
        verdict = run_chaos_gate(
            # replacement_timeout_s: the pods_replaced probe's wait (90 s) is not what this case judges.
            _k8s_config(kube, url, **NEVER_RECOVERS, replacement_timeout_s=GIVE_UP_S),
            tmp_path / "out",
            ["k8s-terminate-candidate-pod"],
            _silent,
        )
    assert verdict.status is Status.FAIL
    assert f"not ready within {GIVE_UP_S}s" in verdict.summary


@pytest.mark.slow
@pytest.mark.parametrize("dependency", K8S_DEPENDENCIES)
def test_a_service_that_dies_without_its_dependency_fails_k8s_scale(
    dependency: str, kube: FakeKubeApi, tmp_path: Path
) -> None:
    port = str(kube.cluster.statefulsets[dependency].port)
    with _mini_with_dependency(port, "dead-without") as url:
        kube.cluster.liveness_url = f"{url}/health/live"  # the kubelet restarts what fails it
        # recovery_timeout_s: the recovery probes' waits (a dead service never recovers) are not what
        # this case judges: the liveness restart during the outage is.
        config = _k8s_config(kube, url, recovery_timeout_s=GIVE_UP_S)
        verdict = run_chaos_gate(config, tmp_path / "out", [f"k8s-scale-{dependency}-to-zero"], _silent)
    assert verdict.status is Status.FAIL
    assert f"probe 'candidate-pods-alive-without-{dependency}' failed" in verdict.summary
    assert "restarted 1 time(s) since the fault" in verdict.summary
    assert kube.cluster.statefulsets[dependency].replicas == 1  # scaled back (method, then rollback)


@pytest.mark.slow
def test_scaling_a_statefulset_that_is_already_at_zero_fails(kube: FakeKubeApi, tmp_path: Path) -> None:
    kube.cluster.statefulsets["kafka"].replicas = 0
    kube.cluster.statefulsets["kafka"].apply()
    with _mini_with_dependency("", "") as url:
        verdict = run_chaos_gate(
            _k8s_config(kube, url), tmp_path / "out", ["k8s-scale-kafka-to-zero"], _silent
        )
    assert verdict.status is Status.FAIL
    assert "already has 0 replicas: nothing to change" in verdict.summary
