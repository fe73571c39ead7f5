"""Python access to the local service scripts (`scripts/services/<name>.sh`).

`LocalService` drives one script; `ServiceSet` a group of them that shares one state directory and
one set of ports. `ServiceSet.shared()` is the long-lived default set every test session reuses
(fixed ports, default state dir); `ServiceSet.private(dir)` is an isolated set on free ports, for
tests that stop, kill or corrupt a service without disturbing anyone else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from immune_suite.paths import SERVICES_DIR
from tests.support.ports import free_tcp_ports

SCRIPTS_DIR = SERVICES_DIR
SERVICE_NAMES: tuple[str, ...] = ("postgres", "redis", "kafka", "prometheus")
# The environment variables that move each service to other ports.
PORT_VARIABLES: Mapping[str, tuple[str, ...]] = {
    "postgres": ("IMMUNE_PG_PORT",),
    "redis": ("IMMUNE_REDIS_PORT",),
    "kafka": ("IMMUNE_KAFKA_PORT", "IMMUNE_KAFKA_CONTROLLER_PORT"),
    "prometheus": ("IMMUNE_PROMETHEUS_PORT",),
}
# Kafka's cold start (JVM, storage format, metadata log replay) dominates on a slow, shared machine.
SCRIPT_TIMEOUT_S = 600.0
STATUS_NOT_RUNNING = 3


class ServiceScriptError(RuntimeError):
    """A service script exited with an unexpected status; carries its output for the test report."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)} exited {returncode}\n{stderr.strip()[-4000:]}")


def parse_env_lines(text: str) -> dict[str, str]:
    """Parses `KEY=VALUE` or `export KEY=VALUE` lines as printed by the scripts."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip().removeprefix("export ").strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not a KEY=VALUE line: {raw!r}")
        result[key] = value
    return result


def run_script(
    script: str, args: Iterable[str], overrides: Mapping[str, str], timeout: float = SCRIPT_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    argv = ["bash", str(SCRIPTS_DIR / script), *args]
    return subprocess.run(
        argv,
        env={**os.environ, **overrides},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class LocalService:
    """One service script run with the given environment overrides (ports, state dir)."""

    name: str
    overrides: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SERVICE_NAMES:
            raise ValueError(f"unknown service {self.name!r}; known: {', '.join(SERVICE_NAMES)}")

    def run(self, command: str, *, expected: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        completed = run_script(f"{self.name}.sh", [command], self.overrides)
        if completed.returncode not in expected:
            raise ServiceScriptError(
                [f"{self.name}.sh", command], completed.returncode, completed.stdout, completed.stderr
            )
        return completed

    def install(self) -> None:
        self.run("install")

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.run("stop")

    def restart(self) -> None:
        self.run("restart")

    def is_running(self) -> bool:
        return self.run("status", expected=(0, STATUS_NOT_RUNNING)).returncode == 0

    def pid(self) -> int | None:
        completed = self.run("pid", expected=(0, STATUS_NOT_RUNNING))
        return int(completed.stdout.strip()) if completed.returncode == 0 else None

    def env(self) -> dict[str, str]:
        return parse_env_lines(self.run("env").stdout)

    def kill(self, timeout_s: float = 30.0) -> None:
        """SIGKILL the main process, as a crash would; `start` recovers from it."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _process_exists(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} pid {pid} survived SIGKILL for {timeout_s}s")
            time.sleep(0.1)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it no longer holds ports or files, so it counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


class ServiceSet:
    """Services that share a state directory and port assignments."""

    def __init__(
        self, names: Iterable[str] = SERVICE_NAMES, overrides: Mapping[str, str] | None = None
    ) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.overrides: dict[str, str] = dict(overrides or {})
        self.services: dict[str, LocalService] = {
            name: LocalService(name, self.overrides) for name in self.names
        }
        self.owned_state_dir: Path | None = None

    @classmethod
    def shared(cls, names: Iterable[str] = SERVICE_NAMES) -> ServiceSet:
        """The default set: fixed ports, default state dir, left running for every later session."""
        return cls(names)

    @classmethod
    def private(cls, names: Iterable[str] = SERVICE_NAMES, state_dir: Path | None = None) -> ServiceSet:
        """An isolated set: its own state dir and free ports; binaries still come from the shared cache.

        Without `state_dir` a fresh directory is made under the system temp dir (removed by `discard`).
        Not under pytest's tmp_path when PostgreSQL is in the set: every pytest session start resets
        /tmp/pytest-of-<user> to mode 0700, which locks the `postgres` OS user out of its data dir.
        """
        chosen = tuple(names)
        variables = [var for name in chosen for var in PORT_VARIABLES[name]]
        overrides = dict(zip(variables, map(str, free_tcp_ports(len(variables))), strict=True))
        owned = state_dir is None
        directory = Path(tempfile.mkdtemp(prefix="immune-services-")) if state_dir is None else state_dir
        overrides["IMMUNE_STATE_DIR"] = str(directory)
        service_set = cls(chosen, overrides)
        service_set.owned_state_dir = directory if owned else None
        return service_set

    def __getitem__(self, name: str) -> LocalService:
        return self.services[name]

    def start(self) -> dict[str, str]:
        """Installs and starts every service (in parallel, via up.sh); returns their IMMUNE_* settings."""
        completed = run_script("up.sh", self.names, self.overrides)
        if completed.returncode != 0:
            raise ServiceScriptError(
                ["up.sh", *self.names], completed.returncode, completed.stdout, completed.stderr
            )
        return parse_env_lines(completed.stdout)

    def stop(self) -> None:
        errors: list[ServiceScriptError] = []
        for name in reversed(self.names):
            try:
                self.services[name].stop()
            except ServiceScriptError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def discard(self) -> None:
        """Stops every service and removes the state dir this set created for itself."""
        try:
            self.stop()
        finally:
            if self.owned_state_dir is not None:
                shutil.rmtree(self.owned_state_dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for service in self.services.values():
            merged.update(service.env())
        return merged
