"""Chaos Toolkit probes and actions for the local stack (supervisord processes, scripts/services).

Experiments call these as `{"type": "python", "module": "immune_chaos.local", "func": ...}`. All
activities of one `chaos run` execute in one process, so each fault action records when it injected its
fault (`mark_fault`) and the probes that follow measure recovery from that moment, not from their own
start nor from the import of this module: a recovery probe with no fault before it raises.

Fault actions prove their effect: they check that there was something to hit (a running process, a
running service), that it was hit (the pid is gone, the service is stopped), and return
`{"affected": [...]}`; the chaos gate fails an experiment whose method action affected nothing.

Recovery probes raise when recovery takes longer than allowed: the activity then fails in the journal,
which the chaos gate treats as a failed experiment, while the returned seconds become measurements.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from immune_suite.gates import sample_events

__all__ = [
    "add_dependency_latency",
    "events_consistent",
    "instances_alive",
    "instances_ready",
    "kill_leader",
    "kill_program",
    "leader_present",
    "mark_fault",
    "mark_restored",
    "readiness_recovery_seconds",
    "reelection_seconds",
    "remove_dependency_latency",
    "restart_recovery_seconds",
    "send_events",
    "service_alive",
    "start_programs",
    "start_service",
    "stop_service",
]

POLL_S = 0.2


class ChaosActivityError(RuntimeError):
    """A probe or action that could not do its job (the journal records the message)."""


@dataclass
class Fault:
    """The fault this `chaos run` injected last: its kind ("kill", "stop", "latency", ...), when (`at`, in
    `time.monotonic()` seconds), and what it hit (`details`: program, pid, service, term, `restored_at`)."""

    kind: str
    at: float = field(default_factory=time.monotonic)  # time.monotonic() when the fault was injected
    details: dict[str, Any] = field(default_factory=dict)


# The last fault injected in this `chaos run` process; None until a fault action ran.
_FAULT: Fault | None = None


def mark_fault(kind: str, **details: Any) -> Fault:
    """Start the fault timer: called by every fault action (ours and the Kubernetes wrappers) once the
    fault is in place."""
    global _FAULT
    _FAULT = Fault(kind=kind, details=details)
    return _FAULT


def mark_restored(**match: Any) -> None:
    """The injected fault was undone (a dependency started or scaled back): recovery counts from here.

    Only a fault whose details match `match` (e.g. service=redis) is marked; the first restore counts.
    """
    fault = _FAULT
    if fault is not None and all(fault.details.get(k) == v for k, v in match.items()):
        fault.details.setdefault("restored_at", time.monotonic())


def current_fault(probe: str) -> Fault:
    """The fault injected last in this run, for the recovery probe named `probe`.

    Raises ChaosActivityError when no fault action ran before it: a recovery time needs its fault.
    """
    if _FAULT is None:
        raise ChaosActivityError(
            f"{probe}: no fault was injected before this probe in this run "
            "(a recovery time needs the moment of its fault)"
        )
    return _FAULT


def _since_fault(probe: str) -> float:
    return round(time.monotonic() - current_fault(probe).at, 3)


def since_restored(probe: str) -> float:
    """Seconds from the moment the injected fault was undone (a dependency started again), else from
    the fault; raises ChaosActivityError when no fault came before `probe`."""
    fault = current_fault(probe)
    restored = fault.details.get("restored_at")
    return round(time.monotonic() - (restored if restored is not None else fault.at), 3)


def _process_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """The process `pid` no longer exists (a zombie awaiting its parent counts as gone)."""

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        try:
            return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split(") ", 1)[1].startswith("Z")
        except (OSError, IndexError):
            return True

    return _wait(gone, timeout_s)


def _as_list(value: list[str] | str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _auth(api_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"} if api_token else {}


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def _get(url: str, api_token: str = "", timeout_s: float = 2.0) -> httpx.Response | None:
    try:
        return httpx.get(url, headers=_auth(api_token), timeout=timeout_s)
    except httpx.HTTPError:
        return None


def _ready(url: str) -> bool:
    response = _get(f"{url.rstrip('/')}/health/ready")
    return response is not None and response.status_code == 200


# --- supervisord ------------------------------------------------------------------------------------


def _supervisorctl(supervisor_conf: str, *args: str) -> str:
    binary = Path(sys.executable).parent / "supervisorctl"
    command = [str(binary) if binary.exists() else "supervisorctl", "-c", supervisor_conf, *args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)  # noqa: S603
    return completed.stdout.strip()


def _pid(supervisor_conf: str, program: str) -> int | None:
    text = _supervisorctl(supervisor_conf, "pid", program)
    return int(text) if text.isdigit() and int(text) > 0 else None


def instance_urls(supervisor_conf: str) -> dict[str, str]:
    """Program name -> base URL for every program that runs `... --port N` (the service instances)."""
    parser = configparser.RawConfigParser(strict=False)
    parser.read(supervisor_conf, encoding="utf-8")
    urls: dict[str, str] = {}
    for section in parser.sections():
        if not section.startswith("program:"):
            continue
        args = shlex.split(parser.get(section, "command", fallback=""))
        if "--port" in args and args.index("--port") + 1 < len(args):
            host = args[args.index("--host") + 1] if "--host" in args else "127.0.0.1"
            # A wildcard bind address is reached through loopback.
            host = "127.0.0.1" if not host or set(host) <= {"0", ".", ":"} else host
            urls[section.split(":", 1)[1]] = f"http://{host}:{args[args.index('--port') + 1]}"
    return urls


def kill_program(supervisor_conf: str, programs: list[str] | str, index: int = 0) -> dict[str, Any]:
    """SIGKILL one supervised program (as the OOM killer or a node failure would); supervisord restarts it.

    `programs` is a list or a comma-separated string of supervisord program names; `index` picks one.
    Returns `{"program", "pid", "affected": [...]}`. Raises ChaosActivityError when there is no such
    program, it is not running, or it survives the signal (the fault would affect nothing).
    """
    names = _as_list(programs)
    if index >= len(names):
        raise ChaosActivityError(f"no program #{index} among {names}: nothing to kill")
    program = names[index]
    pid = _pid(supervisor_conf, program)
    if pid is None:
        raise ChaosActivityError(f"{program} is not running under {supervisor_conf}: nothing to kill")
    _sigkill(program, pid)
    mark_fault("kill", program=program, pid=pid)
    return {"program": program, "pid": pid, "affected": [f"{program} (pid {pid})"]}


def _sigkill(program: str, pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise ChaosActivityError(
            f"{program} (pid {pid}) exited before the kill: nothing was killed"
        ) from None
    if not _process_gone(pid):
        raise ChaosActivityError(f"{program} (pid {pid}) survived SIGKILL")


def start_programs(supervisor_conf: str, programs: list[str] | str) -> dict[str, Any]:
    """Rollback: make sure every program is started (a no-op for those supervisord already restarted)."""
    stopped = [p for p in _as_list(programs) if _pid(supervisor_conf, p) is None]
    answers = {p: _supervisorctl(supervisor_conf, "start", p) for p in stopped}
    return {"affected": stopped, "answers": answers}


def restart_recovery_seconds(
    supervisor_conf: str,
    programs: list[str] | str,
    urls: list[str] | str = "",
    index: int = 0,
    timeout_s: float = 30.0,
) -> float:
    """Seconds from the kill until the program runs again under a new pid and its instance is ready.

    `urls` (list or comma-separated) gives the instances' base URLs in `programs` order; without one the
    URL is read from the supervisord config. Raises ChaosActivityError when no kill came before it or when
    recovery takes longer than `timeout_s` seconds.
    """
    program = _as_list(programs)[index]
    known = _as_list(urls)
    url = known[index] if index < len(known) else instance_urls(supervisor_conf).get(program)
    killed = current_fault("restart_recovery_seconds").details.get("pid")

    def recovered() -> bool:
        pid = _pid(supervisor_conf, program)
        return pid is not None and pid != killed and (url is None or _ready(url))

    if not _wait(recovered, timeout_s):
        raise ChaosActivityError(f"{program} not recovered within {timeout_s:.0f}s of the kill")
    return _since_fault("restart_recovery_seconds")


# --- leadership --------------------------------------------------------------------------------------


def _coordination(url: str, api_token: str) -> dict[str, Any] | None:
    response = _get(f"{url.rstrip('/')}/api/v1/coordination", api_token)
    if response is None or response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


def _find_leader(supervisor_conf: str, api_token: str) -> tuple[str, dict[str, Any]] | None:
    for program, url in instance_urls(supervisor_conf).items():
        state = _coordination(url, api_token)
        if state and state.get("is_leader"):
            return program, state
    return None


def leader_present(supervisor_conf: str, api_token: str = "", within_s: float = 15.0) -> bool:
    """Some instance holds the leadership (waiting up to `within_s` seconds, e.g. for a lease left by a
    crash); asks each instance's GET /api/v1/coordination with the bearer `api_token`."""
    return _wait(lambda: _find_leader(supervisor_conf, api_token) is not None, within_s)


def kill_leader(supervisor_conf: str, api_token: str = "", within_s: float = 15.0) -> dict[str, Any]:
    """Find the instance that says it is the leader (GET /api/v1/coordination) and SIGKILL it.

    Waits up to `within_s` seconds for a leader. Returns `{"program", "pid", "leader", "term",
    "affected"}`. Raises ChaosActivityError when no instance leads in time or the leader stops first.
    """
    found: list[tuple[str, dict[str, Any]]] = []

    def leader_with_pid() -> bool:
        leader = _find_leader(supervisor_conf, api_token)
        if leader is not None and _pid(supervisor_conf, leader[0]) is not None:
            found.append(leader)
            return True
        return False

    if not _wait(leader_with_pid, within_s):
        raise ChaosActivityError(f"no instance reports itself as the leader within {within_s:.0f}s")
    program, state = found[-1]
    pid = _pid(supervisor_conf, program)
    if pid is None:
        raise ChaosActivityError(f"the leader {program} stopped before it could be killed")
    _sigkill(program, pid)
    mark_fault("kill-leader", program=program, pid=pid, leader=state.get("leader"), term=state.get("term"))
    return {
        "program": program,
        "pid": pid,
        "leader": state.get("leader"),
        "term": state.get("term"),
        "affected": [f"{program} (pid {pid})"],
    }


def reelection_seconds(supervisor_conf: str, api_token: str = "", timeout_s: float = 10.0) -> float:
    """Seconds from killing the leader until an instance leads under a newer fencing term.

    Raises ChaosActivityError when no leader was killed before it or no new leader comes within
    `timeout_s` seconds.
    """
    old_term = current_fault("reelection_seconds").details.get("term")
    urls = instance_urls(supervisor_conf)

    def elected() -> bool:
        for url in urls.values():
            state = _coordination(url, api_token)
            newer = old_term is None or int((state or {}).get("term", 0)) > old_term
            if state and state.get("is_leader") and newer:
                return True
        return False

    if not _wait(elected, timeout_s):
        raise ChaosActivityError(f"no new leader within {timeout_s:.0f}s (old term {old_term})")
    return _since_fault("reelection_seconds")


# --- dependencies (scripts/services/<name>.sh) ----------------------------------------------------------


def _service_script(services_dir: str, name: str, command: str, env: dict[str, str] | None = None) -> str:
    script = Path(services_dir) / f"{name}.sh"
    if not script.exists():
        raise ChaosActivityError(f"no service script {script}")
    completed = subprocess.run(  # noqa: S603 - our own scripts
        ["/bin/bash", str(script), command],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if completed.returncode != 0:
        raise ChaosActivityError(f"{name}.sh {command} failed: {completed.stderr.strip()[-400:]}")
    return completed.stdout.strip()


def _service_pid(services_dir: str, name: str) -> int | None:
    """The dependency's main pid (`<name>.sh pid`), None when it is not running."""
    script = Path(services_dir) / f"{name}.sh"
    if not script.exists():
        raise ChaosActivityError(f"no service script {script}")
    completed = subprocess.run(  # noqa: S603 - our own scripts
        ["/bin/bash", str(script), "pid"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = completed.stdout.strip()
    return int(text) if completed.returncode == 0 and text.isdigit() else None


def stop_service(services_dir: str, name: str) -> dict[str, Any]:
    """Stop a running dependency (`scripts/services/<name>.sh stop` in `services_dir`).

    Returns `{"stopped", "pid", "affected"}`. Raises ChaosActivityError when it was not running (the fault
    would affect nothing), its script is missing or fails, or it still runs afterwards.
    """
    pid = _service_pid(services_dir, name)
    if pid is None:
        raise ChaosActivityError(f"{name} is not running: stopping it would affect nothing")
    _service_script(services_dir, name, "stop")
    if not _process_gone(pid, timeout_s=60.0) or _service_pid(services_dir, name) is not None:
        raise ChaosActivityError(f"{name} (pid {pid}) is still running after `{name}.sh stop`")
    mark_fault("stop", service=name, pid=pid)
    return {"stopped": name, "pid": pid, "affected": [f"{name} (pid {pid})"]}


def start_service(services_dir: str, name: str) -> dict[str, Any]:
    """Start a dependency (a no-op when it runs); `affected` is empty when it was already running.

    Returns `{"started", "pid", "affected"}`. Raises ChaosActivityError when its script is missing or
    fails, or it does not run afterwards.
    """
    was_running = _service_pid(services_dir, name) is not None
    _service_script(services_dir, name, "start")
    pid = _service_pid(services_dir, name)
    if pid is None:
        raise ChaosActivityError(f"{name} is not running after `{name}.sh start`")
    mark_restored(service=name)
    return {"started": name, "pid": pid, "affected": [] if was_running else [f"{name} (pid {pid})"]}


def service_alive(url: str, within_s: float = 0.0, consecutive: int = 1) -> bool:
    """The process still answers its liveness probe (degraded is fine, crashed is not): `consecutive`
    answers 200 in a row, waiting up to `within_s` seconds for them (defaults: one try, one answer).

    The wait and the run are for a router in front of several pods: one killed without grace stays in
    the router's endpoints until it learns of the removal (Kubernetes: the EndpointSlice update, then
    the router's own reload), and a request sent there meanwhile fails although the other pods serve.
    A run of answers (a round robin over the endpoints) shows the router has dropped the dead one, so
    the probes after this one measure the remaining pods, not the router's lag.
    """
    in_a_row = 0

    def answers() -> bool:
        nonlocal in_a_row
        response = _get(f"{url.rstrip('/')}/health/live")
        in_a_row = in_a_row + 1 if response is not None and response.status_code == 200 else 0
        return in_a_row >= int(consecutive)

    return _wait(answers, float(within_s))


def instances_alive(urls: list[str] | str) -> bool:
    """Every instance's process answers its liveness probe (/health/live 200), asked directly.

    Not through the candidate endpoint: a proxy that health-checks readiness takes every unready
    instance out of rotation during a dependency outage and answers 503 itself, while the processes
    are alive - which is what this probe is about. No URL at all is a failure, never a pass.
    """
    targets = _as_list(urls)
    return bool(targets) and all(service_alive(u) for u in targets)


def instances_ready(urls: list[str] | str, within_s: float = 0.0) -> bool:
    """Every URL (list or comma-separated) answers /health/ready with 200, waiting up to `within_s`
    seconds for it. No URL at all is False."""
    targets = _as_list(urls)
    return bool(targets) and _wait(lambda: all(_ready(u) for u in targets), within_s)


def readiness_recovery_seconds(url: str, timeout_s: float = 60.0) -> float:
    """Seconds until `url` is ready again, from the dependency's return (or from the fault itself).

    Raises ChaosActivityError when no fault came before it or `url` is not ready within `timeout_s` seconds.
    """
    current_fault("readiness_recovery_seconds")
    if not _wait(lambda: _ready(url), timeout_s):
        raise ChaosActivityError(f"{url} not ready within {timeout_s:.0f}s")
    return since_restored("readiness_recovery_seconds")


# Events this `chaos run` process got acknowledged (2xx, new), and the database-wide count of stored
# events when the run's first consistency check saw it: afterwards at least their sum must be stored.
_RUN_EVENTS: dict[str, int | None] = {"acknowledged_to_us": 0, "stored_at_start": None}


def send_events(
    url: str, api_token: str, count: int = 100, batch_size: int = 20, timeout_s: float = 30.0
) -> dict[str, int]:
    """Post `count` valid events in batches of `batch_size` events; a graceful service accepts them or
    refuses with 429/503, promptly.

    A 5xx other than 503, a connection refused (the process is gone) or no answer within `timeout_s`
    seconds (the process hangs on its dead dependency) is ungraceful: counted in `ungraceful` (which the
    experiments' tolerance requires to be 0) and failing the activity with ChaosActivityError. Returns
    event counts: `{"accepted", "refused", "server_errors", "unreachable", "timed_out", "ungraceful"}`.
    """
    outcome = {
        "accepted": 0,
        "refused": 0,
        "server_errors": 0,
        "unreachable": 0,
        "timed_out": 0,
        "ungraceful": 0,
    }
    with httpx.Client(headers=_auth(api_token), timeout=timeout_s) as client:
        for start in range(0, count, batch_size):
            batch = sample_events.generate(min(batch_size, count - start))
            try:
                response = client.post(f"{url.rstrip('/')}/api/v1/events", json={"events": batch})
            except httpx.TimeoutException:
                outcome["timed_out"] += len(batch)
                continue
            except httpx.HTTPError:
                outcome["unreachable"] += len(batch)
                continue
            if response.status_code in (200, 201, 202):
                outcome["accepted"] += len(batch)
                _RUN_EVENTS["acknowledged_to_us"] = int(_RUN_EVENTS["acknowledged_to_us"] or 0) + _new_in(
                    response, len(batch)
                )
            elif response.status_code in (429, 503):
                outcome["refused"] += len(batch)
            else:
                outcome["server_errors"] += len(batch)
    outcome["ungraceful"] = outcome["server_errors"] + outcome["unreachable"] + outcome["timed_out"]
    if outcome["ungraceful"]:
        raise ChaosActivityError(f"ungraceful answers during the fault: {outcome}")
    return outcome


def _new_in(response: httpx.Response, sent: int) -> int:
    try:
        return int(response.json().get("accepted", sent))
    except (ValueError, AttributeError):
        return sent


def events_consistent(
    url: str, api_token: str, drain_s: float = 30.0, require_processed: bool = True
) -> bool:
    """Zero events lost, judged on database-wide figures (`GET /api/v1/stats`, every replica):

    - `events_acknowledged` (what all replicas acknowledged, recorded in the database with the events)
      equals `events_stored`;
    - with `require_processed`, every stored event was processed (`events_processed`): the pipeline
      drained, nothing is stuck on the way to detection;
    - at least as many events are stored as when this run first looked plus those acknowledged to this
      run's own `send_events` (a check that does not rely on the service's own counters).

    Waits up to `drain_s` seconds for all three; raises ChaosActivityError with the last figures
    otherwise (missing figures count as failure, never as success).
    """
    last: dict[str, Any] = {}

    def consistent() -> bool:
        response = _get(f"{url.rstrip('/')}/api/v1/stats", api_token)
        if response is None or response.status_code != 200:
            last["error"] = "no stats" if response is None else f"stats answered {response.status_code}"
            return False
        stats = response.json()
        figures = {k: stats.get(k) for k in ("events_acknowledged", "events_stored", "events_processed")}
        last.clear()
        last.update(figures)
        if not all(isinstance(v, int) for v in figures.values()):
            last["error"] = "stats lack database-wide figures"
            return False
        if _RUN_EVENTS["stored_at_start"] is None:
            _RUN_EVENTS["stored_at_start"] = figures["events_stored"]
        floor = int(_RUN_EVENTS["stored_at_start"] or 0) + int(_RUN_EVENTS["acknowledged_to_us"] or 0)
        last["stored_at_least"] = floor
        return figures["events_acknowledged"] == figures["events_stored"] >= floor and (
            not require_processed or figures["events_processed"] == figures["events_stored"]
        )

    if not _wait(consistent, drain_s):
        raise ChaosActivityError(f"events lost or not drained within {drain_s:.0f}s: {last}")
    return True


# --- latency ------------------------------------------------------------------------------------------


def _proxy_pidfile(name: str) -> Path:
    state = Path(os.environ.get("IMMUNE_STATE_DIR", Path.home() / ".local/state/active-immune-core"))
    return state / name / "latency-proxy.pid"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", int(port))) == 0


def _round_trip_ms(port: int, request: bytes, timeout_s: float = 10.0) -> float | None:
    """Milliseconds from sending `request` on 127.0.0.1:`port` to the first byte of the answer."""
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout_s) as conn:
            started = time.monotonic()
            conn.sendall(request)
            if not conn.recv(1):
                return None
            return round((time.monotonic() - started) * 1000.0, 1)
    except OSError:
        return None


def add_dependency_latency(
    services_dir: str,
    name: str,
    port_variable: str,
    port: int,
    latency_ms: float,
    relocated_port: int,
    probe_request: str = "",
) -> dict[str, Any]:
    """Put `latency_ms` in front of a dependency without touching the service's configuration.

    `tc netem` is not available in this kernel, so the dependency moves: it is restarted on
    `relocated_port` and our TCP proxy (immune_chaos.latency_proxy) takes its usual port, delaying
    every chunk in both directions. The short restart is part of the fault.

    Proof of effect: the dependency was running, runs again on `relocated_port`, and - when
    `probe_request` is given (e.g. "PING\r\n" for Redis) - a request through the proxy takes at least
    90 % of `latency_ms` to be answered. Raises ChaosActivityError otherwise.
    """
    if _service_pid(services_dir, name) is None:
        raise ChaosActivityError(f"{name} is not running: delaying it would affect nothing")
    _service_script(services_dir, name, "stop")
    _service_script(services_dir, name, "start", {port_variable: str(relocated_port)})
    pidfile = _proxy_pidfile(name)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(  # noqa: S603 - our own proxy module
        [
            sys.executable,
            "-m",
            "immune_chaos.latency_proxy",
            "--listen-port",
            str(port),
            "--target-port",
            str(relocated_port),
            "--latency-ms",
            str(latency_ms),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pidfile.write_text(str(process.pid), encoding="utf-8")
    if not _wait(lambda: _listening(port), 10.0):
        raise ChaosActivityError(f"latency proxy did not listen on {port}")
    if not _listening(relocated_port):
        raise ChaosActivityError(f"{name} does not listen on its relocated port {relocated_port}")
    measured = _round_trip_ms(port, probe_request.encode()) if probe_request else None
    if probe_request and (measured is None or measured < 0.9 * float(latency_ms)):
        raise ChaosActivityError(
            f"a request to {name} through the proxy took {measured} ms, not the {latency_ms} ms injected"
        )
    mark_fault("latency", service=name, latency_ms=latency_ms)
    return {
        "service": name,
        "proxy_pid": process.pid,
        "latency_ms": latency_ms,
        "measured_round_trip_ms": measured,
        "affected": [f"{name} behind proxy pid {process.pid}"],
    }


def remove_dependency_latency(
    services_dir: str, name: str, port_variable: str, relocated_port: int
) -> dict[str, Any]:
    """Stop the proxy and bring the dependency back on its usual port (safe to run twice).

    `affected` names the proxy stopped; it is empty when there was none (nothing to undo). Raises
    ChaosActivityError when the dependency does not run on its usual port afterwards.
    """
    pidfile = _proxy_pidfile(name)
    affected: list[str] = []
    if pidfile.exists():
        try:
            proxy_pid = int(pidfile.read_text(encoding="utf-8").strip())
            os.kill(proxy_pid, signal.SIGTERM)
            affected.append(f"latency proxy pid {proxy_pid}")
        except (ProcessLookupError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)
    _service_script(services_dir, name, "stop", {port_variable: str(relocated_port)})
    _service_script(services_dir, name, "start")
    if _service_pid(services_dir, name) is None:
        raise ChaosActivityError(f"{name} is not running on its usual port after the latency was removed")
    mark_restored(service=name)
    return {"service": name, "restored": True, "affected": affected}
