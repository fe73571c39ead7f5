"""A real HAProxy, configured exactly as the local stack configures it, in front of small real servers.

Each "instance" is a threaded HTTP server on the port the stack layout gives it, whose behaviour a
test chooses: a healthy service (identity headers, the API routes smoke and load use), one that
fails a share of its API requests with a 500 carrying no header at all (an unhandled exception in
a service that does not set its identity on errors), one that injects 500s with its headers
(IMMUNE_FAULT_ERROR_RATIO), or one that drops the connection without answering (a crash
mid-request). Routing changes go through the same runtime API the target uses.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from immune_suite.stack_config import LocalTargetConfig
from immune_suite.targets.base import TrafficState
from immune_suite.targets.local.haproxy import HAProxy, haproxy_binary
from immune_suite.targets.local.layout import StackLayout
from tests.support.ports import free_port_block

TOKEN = "ingress-test-token"


@dataclass
class Behaviour:
    color: str  # what the server *says* it is (X-Immune-Color); the ingress may say otherwise
    version: str
    crash_ratio: float = 0.0  # 500 with no header at all (unhandled exception, old service)
    fault_ratio: float = 0.0  # 500 with identity headers (IMMUNE_FAULT_ERROR_RATIO)
    drop_ratio: float = 0.0  # connection closed without an answer (process died mid-request)
    rng: random.Random = field(default_factory=lambda: random.Random(3))


def _handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, status: int, body: Any, identity: bool = True) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if identity:
                self.send_header("X-Immune-Color", behaviour.color)
                self.send_header("X-Immune-Version", behaviour.version)
                # A server cannot forge the ingress's attribution: HAProxy replaces this header.
                self.send_header("X-Immune-Served-By", "forged/blue-0")
            self.end_headers()
            self.wfile.write(data)

        def _api(self) -> bool:
            """Apply the chosen failure to an API request; True when it was answered (or dropped)."""
            roll = behaviour.rng.random()
            if roll < behaviour.drop_ratio:
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                self.connection.close()
                return True
            if roll < behaviour.drop_ratio + behaviour.crash_ratio:
                self._send(500, {"detail": "Internal Server Error"}, identity=False)
                return True
            if roll < behaviour.drop_ratio + behaviour.crash_ratio + behaviour.fault_ratio:
                self._send(500, {"error": "injected_fault"})
                return True
            return False

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                return True
            self._send(401, {"error": "unauthorized"})
            return False

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path in ("/health/ready", "/health/live"):
                self._send(200, {"status": "ok", "color": behaviour.color, "version": behaviour.version})
            elif path.startswith("/api/v1/") and self._api():
                return
            elif path == "/api/v1/stats":
                if self._authorised():
                    self._send(200, {"events_accepted": 0, "events_stored": 0})
            elif path == "/api/v1/threats":
                if self._authorised():
                    self._send(200, {"items": []})
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self._api():
                return
            if self.path == "/api/v1/events" and self._authorised():
                self._send(202, {"accepted": len(body.get("events", [])), "duplicates": 0})
            elif self.path != "/api/v1/events":
                self._send(404, {"error": "not_found"})

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # HAProxy's health checks close their connections early; nothing to report


class Ingress:
    """HAProxy with the local stack's config, and one test server per instance of the layout."""

    def __init__(self, behaviours: dict[str, Behaviour], traffic: TrafficState, replicas: int = 1) -> None:
        base = free_port_block(100, step=250)
        ports = LocalTargetConfig(
            ingress_port=base, stable_port=base + 1, preview_port=base + 2, instance_base_port=base + 50
        )
        # A short root: the admin socket path must fit in sun_path (108 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="ingress-"))
        self.layout = StackLayout(self.root, ports, replicas)
        self.haproxy = HAProxy(self.layout)
        self.servers: list[QuietServer] = []
        for instance, behaviour in behaviours.items():
            server = QuietServer(("127.0.0.1", self.layout.instance_port(instance)), _handler(behaviour))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        self.haproxy.write_files(traffic)
        self.log = (self.root / "haproxy.log").open("wb")
        self.process = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(self.layout.haproxy_cfg)], stdout=self.log, stderr=self.log
        )
        self.wait_up(list(behaviours))

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def wait_up(self, instances: list[str], timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.haproxy.is_up():
                up = {
                    r["svname"]
                    for r in self.haproxy.stat_rows()
                    if r.get("pxname") == "ingress" and r.get("status") == "UP"
                }
                if set(instances) <= up:
                    return
            time.sleep(0.2)
        raise AssertionError(f"HAProxy did not see {instances} up; log: {self.root / 'haproxy.log'}")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()
        for server in self.servers:
            server.shutdown()
            server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


def started(behaviours: dict[str, Behaviour], traffic: TrafficState, replicas: int = 1) -> Iterator[Ingress]:
    ingress = Ingress(behaviours, traffic, replicas)
    try:
        yield ingress
    finally:
        ingress.close()
