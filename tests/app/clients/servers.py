"""Real HTTP servers that stand in for the six external services in tests (no HTTP mocks).

Each ``ServiceServer`` listens on 127.0.0.1, routes by the service's OpenAPI contract, refuses requests
the contract forbids (HTTP 400, recorded in ``bad_requests``) and answers with a small but real
implementation of the service (``SERVICES``). Failure modes are switched at run time:

* ``stop()``: the port refuses connections (down); ``start()`` again binds the same port (recovering);
* ``mode``: ``ok``, ``slow`` (answers after ``slow_s``), ``error`` (503), ``malformed`` (200, not JSON),
  ``invalid`` (200, JSON outside the schema);
* ``script``: modes for the next requests, one each, before ``mode`` applies again (flapping).
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from immune_core.clients.contract import Contract

Handler = Callable[["Request"], tuple[int, Any]]


@dataclass
class Request:
    operation: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class ServiceServer:
    service: str
    handlers: dict[str, Handler]
    mode: str = "ok"
    slow_s: float = 3.0
    script: deque[str] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    bad_requests: list[str] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.contract = Contract.load(self.service)
        self._routes = [
            (
                op.method,
                re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", op.path) + "$"),
                op.operation_id,
            )
            for op in self.contract.operations.values()
        ]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, operation: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.operation == operation)

    def start(self) -> ServiceServer:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
                # client's delayed ACK add ~40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                owner._dispatch(self)

            do_GET = _serve
            do_POST = _serve

        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _next_mode(self) -> str:
        with self._lock:
            return self.script.popleft() if self.script else self.mode

    def _dispatch(self, http: BaseHTTPRequestHandler) -> None:
        split = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        routed = next(
            (
                (operation, match)
                for method, pattern, operation in self._routes
                if method == http.command and (match := pattern.match(split.path))
            ),
            None,
        )
        if routed is None:
            self._send(http, 404, {"error": "no such route"})
            return
        operation, match = routed
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self.bad_requests.append(f"{operation}: body is not JSON")
            self._send(http, 400, {"error": "not JSON"})
            return
        problem = self.contract.request_problem(operation, body)
        if problem is not None:
            self.bad_requests.append(f"{operation}: {problem}")
            self._send(http, 400, {"error": problem})
            return
        request = Request(
            operation,
            {k: unquote(v) for k, v in match.groupdict().items()},
            dict(parse_qsl(split.query)),
            body,
            {k.lower(): v for k, v in http.headers.items()},
        )
        with self._lock:
            self.requests.append(request)
        mode = self._next_mode()
        if mode == "slow":
            time.sleep(self.slow_s)
        if mode == "error":
            self._send(http, 503, {"error": "unavailable"})
        elif mode == "malformed":
            self._send_raw(http, 200, b"<html>gateway says hello</html>", "text/html")
        elif mode == "reject":
            self._send(http, 400, {"error": "refused"})
        elif mode == "invalid":
            self._send(http, 200, {"unexpected": True})
        else:
            status, answer = self.handlers[operation](request)
            self._send(http, status, answer)

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        ServiceServer._send_raw(http, status, json.dumps(body).encode(), "application/json")

    @staticmethod
    def _send_raw(http: BaseHTTPRequestHandler, status: int, payload: bytes, content_type: str) -> None:
        try:
            http.send_response(status)
            http.send_header("Content-Type", content_type)
            http.send_header("Content-Length", str(len(payload)))
            http.end_headers()
            http.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (its timeout): nothing to answer


def _health(_: Request) -> tuple[int, Any]:
    return 200, {"status": "ok"}


# -- the services' behaviour ---------------------------------------------------------------------------
@dataclass
class RTEBehaviour:
    """Escalates high-confidence brute force and scans of many ports, dismisses allowed antigens."""

    allowed: set[str] = field(default_factory=set)
    escalate_to: str = "critical"

    def triage(self, request: Request) -> tuple[int, Any]:
        body = request.body
        if body["antigen"] in self.allowed:
            return 200, {
                "decision": "dismiss",
                "severity": "low",
                "confidence": 0.2,
                "reason": f"{body['antigen']} is on the RTE allow list",
            }
        if body["confidence"] >= 0.6 and body["category"] in ("port_scan", "brute_force", "network_sweep"):
            return 200, {
                "decision": "escalate",
                "severity": self.escalate_to,
                "confidence": 0.95,
                "reason": f"reflex rule: {body['category']} at confidence {body['confidence']}",
            }
        return 200, {
            "decision": "confirm",
            "severity": body["severity"],
            "confidence": body["confidence"],
            "reason": "no reflex rule applies",
        }


@dataclass
class IPIntelBehaviour:
    malicious: dict[str, list[str]] = field(default_factory=dict)
    ttl_s: int = 3600

    def lookup(self, request: Request) -> tuple[int, Any]:
        ip = request.params["ip"]
        if ip in self.malicious:
            return 200, {
                "ip": ip,
                "reputation": "malicious",
                "score": 0.97,
                "categories": self.malicious[ip],
                "ttl_s": self.ttl_s,
                "source": "test-intel",
            }
        return 200, {"ip": ip, "reputation": "unknown", "score": 0.0, "categories": [], "ttl_s": 0}


@dataclass
class EthicalAIBehaviour:
    """Denies isolating or killing anything on a protected host; records one decision per action id."""

    protected_hosts: set[str] = field(default_factory=set)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked_never: set[str] = field(default_factory=set)  # addresses that must never be blocked

    def validate(self, request: Request) -> tuple[int, Any]:
        body = request.body
        if request.headers.get("idempotency-key") != body["action_id"]:
            return 400, {"error": "Idempotency-Key must be the action id"}
        known = self.decisions.get(body["action_id"])
        if known is None:
            host = body["target"].split("/", 1)[0]
            if body["action"] == "block_source" and body["target"] in self.blocked_never:
                known = {
                    "action_id": body["action_id"],
                    "decision": "denied",
                    "reason": f"blocking {body['target']} would cut a shared gateway",
                    "policy": "shared-infra",
                }
            elif body["action"] in ("isolate_host", "kill_process") and host in self.protected_hosts:
                known = {
                    "action_id": body["action_id"],
                    "decision": "denied",
                    "reason": f"{host} is a protected host",
                    "policy": "protected-assets",
                }
            else:
                known = {"action_id": body["action_id"], "decision": "approved", "reason": "proportionate"}
            self.decisions[body["action_id"]] = known
        return 200, known


@dataclass
class MemoryBehaviour:
    detectors: list[dict[str, Any]] = field(default_factory=list)
    # The platform "has seen this before": a recall with no stored detector near it is answered with a
    # detector of this category centred on the asked vector (None: answer only what is stored).
    known_category: str | None = None

    def recall(self, request: Request) -> tuple[int, Any]:
        query = request.body
        if self.known_category is not None and not self.detectors:
            detector = {
                "detector_id": f"platform-{abs(hash(tuple(query['features']))) % 10**8}",
                "antigen_type": query["antigen_type"],
                "space": query["space"],
                "category": self.known_category,
                "features": query["features"],
                "radius": 0.2,
                "stimulations": 3,
            }
            return 200, {"detectors": [detector]}
        near = [
            d
            for d in self.detectors
            if d["antigen_type"] == query["antigen_type"]
            and d.get("space", query.get("space")) == query.get("space", d.get("space"))
            and len(d["features"]) == len(query["features"])
        ]
        near.sort(key=lambda d: math.dist(d["features"], query["features"]))
        return 200, {"detectors": near[: query["limit"]]}

    def remember(self, request: Request) -> tuple[int, Any]:
        self.detectors.append(request.body)
        return 201, {"detector_id": request.body["detector_id"]}


@dataclass
class AffinityBehaviour:
    """Affinity ``1 / (1 + distance)`` to the antigen, or, with ``prefer`` set, to that point instead (a
    scorer that knows where the threat really lies, and so disagrees with the core's own ranking)."""

    prefer: tuple[float, ...] | None = None

    def affinity(self, request: Request) -> tuple[int, Any]:
        antigen = request.body["antigen"]
        target = self.prefer if self.prefer is not None and len(self.prefer) == len(antigen) else antigen
        return 200, {
            "affinities": [
                1.0 / (1.0 + math.dist(target, c)) if len(c) == len(target) else 0.0
                for c in request.body["candidates"]
            ]
        }


@dataclass
class TregBehaviour:
    """Suppresses when most threats in the window are low severity (a burst of noise, not an attack)."""

    suppression: float = 0.5
    always: bool = False  # suppress whatever the threats (a regulator that over-reaches)

    def suppress(self, request: Request) -> tuple[int, Any]:
        threats = request.body["threats"]
        total = sum(threats.values())
        if self.always and total:
            return 200, {"suppression": self.suppression, "reason": "tolerance for everything"}
        if total and threats.get("low", 0) + threats.get("medium", 0) >= 0.5 * total:
            return 200, {"suppression": self.suppression, "reason": "mostly low-grade findings"}
        return 200, {"suppression": 0.0, "reason": "no tolerance applies"}


def build(service: str, behaviour: Any = None) -> ServiceServer:
    """A started server for ``service`` with ``behaviour`` (its default when None), kept as
    ``server.behaviour`` so a test can change what the service knows while it runs."""
    defaults: dict[str, Callable[[], Any]] = {
        "rte": RTEBehaviour,
        "ip_intel": IPIntelBehaviour,
        "ethical_ai": EthicalAIBehaviour,
        "memory": MemoryBehaviour,
        "adaptive_immunity": AffinityBehaviour,
        "treg": TregBehaviour,
    }
    if service not in defaults:
        raise ValueError(service)
    b = behaviour if behaviour is not None else defaults[service]()
    handlers: dict[str, Handler] = {"health": _health}
    if isinstance(b, RTEBehaviour):
        handlers["triage"] = b.triage
    elif isinstance(b, IPIntelBehaviour):
        handlers["lookup"] = b.lookup
    elif isinstance(b, EthicalAIBehaviour):
        handlers["validate"] = b.validate
    elif isinstance(b, MemoryBehaviour):
        handlers["recall"] = b.recall
        handlers["remember"] = b.remember
    elif isinstance(b, TregBehaviour):
        handlers["suppression"] = b.suppress
    elif isinstance(b, AffinityBehaviour):
        handlers["affinity"] = b.affinity
    server = ServiceServer(service, handlers)
    server.behaviour = b  # type: ignore[attr-defined]
    return server.start()
