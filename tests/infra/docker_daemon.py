"""A private Docker daemon and Docker registries for the engine-API image tests.

Debian's `dockerd` (docker.io) runs with its own data root, exec root, socket and pid file, no bridge and
no iptables rules (nothing it starts can reach the network, and the host's firewall is left alone); Debian's
`docker-registry` (distribution 2.8) serves on a free loopback port, once with deletes allowed and once
without, as a real registry is configured either way. Everything lives under one temporary directory and
is stopped (by the process ids started here) when the test module ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

DOCKERD = "dockerd"
REGISTRY = "docker-registry"
START_TIMEOUT_S = 120.0


class DaemonUnavailable(RuntimeError):
    """dockerd or docker-registry is not installed or did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(check: Callable[[], bool], what: str, log: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DaemonUnavailable(f"{what} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise DaemonUnavailable(f"{what} not ready after {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class Registry:
    address: str  # host:port
    deletes: bool

    def manifest_digest(self, repository_path: str, reference: str) -> str | None:
        """The digest a tag (or digest) resolves to, None when the registry has no such manifest."""
        from immune_infra.engine_image import MANIFEST_TYPES

        answer = httpx.head(
            f"http://{self.address}/v2/{repository_path}/manifests/{reference}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=10,
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.headers["Docker-Content-Digest"]


def _registry(root: Path, name: str, deletes: bool, processes: list[subprocess.Popen[bytes]]) -> Registry:
    port = free_port()
    directory = root / name
    directory.mkdir()
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {directory / 'data'}}}\n"
        f"  delete: {{enabled: {'true' if deletes else 'false'}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = directory / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    processes.append(process)
    address = f"127.0.0.1:{port}"
    _wait(lambda: httpx.get(f"http://{address}/v2/", timeout=2).status_code == 200, name, log, process)
    return Registry(address=address, deletes=deletes)


@dataclass(frozen=True)
class DockerLab:
    docker_host: str  # unix:///... for docker-py
    registry: Registry  # deletes allowed
    registry_no_delete: Registry


PACKAGES = ("docker.io", "docker-registry")


def ensure_packages() -> None:
    """Install Debian's docker.io and docker-registry when absent (as scripts/images.sh up does: a fresh
    machine has neither); their init scripts are kept from starting system daemons (RUNLEVEL=1)."""
    if all(shutil.which(binary) for binary in (DOCKERD, REGISTRY)):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-qq"]
    for argv in ([*apt, "update"], [*apt, "-y", "--no-install-recommends", "install", *PACKAGES]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200, check=False)
        if result.returncode != 0:
            raise DaemonUnavailable(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")


@contextlib.contextmanager
def docker_lab(root: Path) -> Iterator[DockerLab]:
    """Start dockerd and two registries under `root`; stop them on exit. Raises DaemonUnavailable."""
    ensure_packages()
    for binary in (DOCKERD, REGISTRY):
        if shutil.which(binary) is None:
            raise DaemonUnavailable(f"{binary} is not installed (apt-get install docker.io docker-registry)")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        daemon_dir = root / "dockerd"
        daemon_dir.mkdir()
        # A short path: unix socket paths are limited to 108 bytes.
        socket_path = Path(f"/tmp/imgprov-docker-{os.getpid()}-{free_port()}.sock")
        log = daemon_dir / "dockerd.log"
        argv = [
            DOCKERD,
            f"--data-root={daemon_dir / 'data'}",
            f"--exec-root={daemon_dir / 'exec'}",
            f"--pidfile={daemon_dir / 'dockerd.pid'}",
            f"--host=unix://{socket_path}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            # Its own containerd namespaces: a cluster's containerd on the default socket stays untouched.
            "--containerd-namespace=imgprov-test",
            "--containerd-plugins-namespace=imgprov-test-plugins",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        docker_host = f"unix://{socket_path}"

        def daemon_ready() -> bool:
            import docker

            if not socket_path.exists():
                return False
            try:
                client = docker.DockerClient(base_url=docker_host, timeout=5)
            except docker.errors.DockerException:
                return False  # the socket exists before the API answers
            try:
                return bool(client.ping())
            finally:
                client.close()

        _wait(daemon_ready, "dockerd", log, process)
        yield DockerLab(
            docker_host=docker_host,
            registry=_registry(root, "registry", True, processes),
            registry_no_delete=_registry(root, "registry-no-delete", False, processes),
        )
    finally:
        for process in reversed(processes):
            _stop(process)
