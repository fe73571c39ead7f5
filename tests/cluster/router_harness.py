"""What tests/cluster/test_router.py runs against: a real etcd + kube-apiserver, real HTTP backends.

The router needs an API server and nothing else: no kubelet, no pods. Services without selectors and
hand-written EndpointSlices stand in for what the EndpointSlice controller publishes for pods, and
point at real HTTP servers of this process. Binaries: the cluster's own build (scripts/cluster.sh),
of the versions pinned in cluster/versions.env.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from immune_suite.paths import REPO_ROOT
from tests.cluster.support import cluster_env, run_cluster_sh

ROUTER_SCRIPT = REPO_ROOT / "cluster" / "router" / "router.sh"
# Cold builds on a loaded 2-core machine take minutes; a warm cache answers at once.
BUILD_TIMEOUT_S = 3600.0
READY_TIMEOUT_S = 180.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_address() -> str:
    """This machine's own non-loopback IPv4 address.

    EndpointSlice validation refuses loopback (and link-local) addresses, so the test's backends bind
    the host's own address instead of 127.0.0.1; packets to it never leave the machine.
    """
    out = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "scope", "global"], check=True, capture_output=True, text=True
    ).stdout
    for interface in json.loads(out):
        for info in interface.get("addr_info", []):
            if info.get("family") == "inet" and info.get("local"):
                return str(info["local"])
    raise RuntimeError("this machine has no global IPv4 address for test backends")


def control_plane_binaries() -> Path:
    """The cluster's bin directory (`AIC_CLUSTER_BIN`, else from `scripts/cluster.sh env`), built first
    if it lacks what we run.

    `cluster.sh build` is cached by version and idempotent (minutes on a cold machine, once).
    """
    bin_dir = Path(os.environ.get("AIC_CLUSTER_BIN") or cluster_env()["AIC_CLUSTER_BIN"])
    if not all((bin_dir / name).is_file() for name in ("etcd", "kube-apiserver", "kubectl")):
        run_cluster_sh("build", timeout=BUILD_TIMEOUT_S)
    return bin_dir


def _wait(
    predicate: Any, what: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not ready within {timeout_s:.0f} s")


@dataclass
class ControlPlane:
    """etcd + kube-apiserver on free 127.0.0.1 ports; admin access by a random static token."""

    workdir: Path
    bin_dir: Path
    api_port: int = field(default_factory=free_port)
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def api(self) -> httpx.Client:
        # The API server's serving certificate is self-signed, made at start for 127.0.0.1 only.
        return httpx.Client(
            base_url=self.server, headers={"Authorization": f"Bearer {self.token}"}, verify=False, timeout=30
        )

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=router-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=router-test={peer_url}",
                # A throwaway store: durability buys nothing and fsync costs seconds on a busy disk.
                "--unsafe-no-fsync",
            ],
        )
        signing_key = self.workdir / "service-account.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(signing_key), "2048"], check=True, capture_output=True
        )
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},router-test-admin,router-test-admin,"system:masters"\n')
        tokens.chmod(0o600)
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'certs'}",
                # The built-in `kubernetes` Service's endpoint may not be loopback.
                f"--advertise-address={host_address()}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={signing_key}",
                f"--service-account-signing-key-file={signing_key}",
                "--service-cluster-ip-range=10.233.0.0/24",
            ],
        )
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "test", "cluster": {"server": self.server, "insecure-skip-tls-verify": True}}
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )
        self.kubeconfig.chmod(0o600)
        with self.api() as client:

            def ready() -> bool:
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    return False

            _wait(ready, "kube-apiserver /readyz", READY_TIMEOUT_S, apiserver)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _ColourHandler(BaseHTTPRequestHandler):
    server: ColourServer

    def do_GET(self) -> None:
        body = self.server.colour.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class ColourServer(ThreadingHTTPServer):
    """A real HTTP backend that answers every GET with its colour (e.g. b"blue")."""

    daemon_threads = True

    def __init__(self, colour: str, address: str) -> None:
        super().__init__((address, 0), _ColourHandler)
        self.colour = colour
        self._thread = threading.Thread(target=self.serve_forever, name=f"backend-{colour}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def router_env(plane: ControlPlane, state_dir: Path, gateway_namespace: str) -> dict[str, str]:
    """Environment for cluster/router/router.sh: this control plane, private ports (metrics on 127.0.0.1)
    and state."""
    env = dict(os.environ)
    env.update(
        {
            "KUBECONFIG": str(plane.kubeconfig),
            "AIC_CLUSTER_STATE": str(state_dir),
            "ROUTER_GATEWAY_PORT": str(free_port()),
            "ROUTER_INGRESS_PORT": str(free_port()),
            "ROUTER_ADMIN_PORT": str(free_port()),
            # No cluster bridge with a private control plane: /metrics on loopback, a private port.
            "ROUTER_METRICS_HOST": "127.0.0.1",
            "ROUTER_METRICS_PORT": str(free_port()),
            "ROUTER_GATEWAY_NAMESPACE": gateway_namespace,
        }
    )
    kubectl = plane.bin_dir / "kubectl"
    if kubectl.is_file():
        env["KUBECTL"] = str(kubectl)
    return env


def router(
    command: str, env: Mapping[str, str], timeout_s: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Run `router.sh <command>`; the caller checks the return code."""
    return subprocess.run(
        ["bash", str(ROUTER_SCRIPT), command],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def weighted_children(admin_port: int, provider: str) -> Iterator[dict[str, Any]]:
    """The router's applied weighted services (Traefik's read-only API), as published to its runtime."""
    response = httpx.get(f"http://127.0.0.1:{admin_port}/api/http/services", timeout=5)
    response.raise_for_status()
    for service in response.json():
        if service.get("provider") == provider and "weighted" in service:
            yield service
