"""What the external-service client's resilience costs per call, against a local HTTP server.

    .venv/bin/python bench/external_clients.py [--calls 2000]

Prints p50/p95/p99 milliseconds per call for: a bare ``httpx.AsyncClient`` POST with ``response.json()``;
``RTEClient.triage`` (bulkhead, circuit breaker, tenacity wrapper, OpenAPI response validation, metrics);
the same client with its circuit open (a call that fails fast, never reaching the network); and the
Threat -> request body + contract check alone, without HTTP. The server is a threaded ``http.server`` on
127.0.0.1 answering one fixed triage decision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import httpx
from immune_core.clients.base import ClientConfig
from immune_core.clients.contract import Contract
from immune_core.clients.metrics import ClientMetrics
from immune_core.clients.rte import RTEClient
from immune_core.detection.threat import Evidence, Threat
from prometheus_client import CollectorRegistry

ANSWER = json.dumps(
    {"decision": "escalate", "severity": "critical", "confidence": 0.95, "reason": "reflex rule"}
).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = 503 if self.server.failing else 200  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)


def _threat() -> Threat:
    now = datetime.now(UTC)
    return Threat(
        threat_id=uuid4(),
        detected_at=now,
        category="port_scan",
        antigen_type="source_ip",
        antigen="198.51.100.66",
        severity="high",
        confidence=0.9,
        cells=["neutrophil"],
        evidence=[Evidence(cell="neutrophil-1", cell_type="neutrophil", reason="scan", at=now)],
        event_ids=[uuid4()],
        signature="port_scan:source_ip:198.51.100.66",
    )


async def _time(calls: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(min(50, calls)):
        await call()  # warm-up: connections, caches
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _row(name: str, samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"{name:<44} p50 {q[49]:7.3f}  p95 {q[94]:7.3f}  p99 {q[98]:7.3f}  ms"


async def main(calls: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.failing = False  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    threat = _threat()
    body = {
        "category": "port_scan",
        "antigen_type": "source_ip",
        "antigen": threat.antigen,
        "severity": "high",
        "confidence": 0.9,
        "cells": ["neutrophil"],
        "host_id": None,
    }
    async with httpx.AsyncClient(base_url=url) as bare:

        async def raw() -> object:
            return (await bare.post("/v1/triage", json=body)).json()

        print(_row("bare httpx POST + json()", await _time(calls, raw)))
    client = RTEClient(
        ClientConfig(base_url=url, breaker_threshold=3, breaker_reset_s=3600),
        ClientMetrics(CollectorRegistry()),
    )
    print(
        _row(
            "RTEClient.triage (full resilience + contract)", await _time(calls, lambda: client.triage(threat))
        )
    )
    server.failing = True  # type: ignore[attr-defined]
    for _ in range(3):
        await client.triage(threat)
    assert await client.state() == "open_circuit"
    print(
        _row("RTEClient.triage, circuit open (fail fast)", await _time(calls, lambda: client.triage(threat)))
    )
    await client.aclose()
    contract = Contract.load("rte")
    decoded = json.loads(ANSWER)

    async def check_only() -> object:
        contract.check("triage", 200, decoded)
        return None

    print(_row("contract check alone", await _time(calls, check_only)))
    server.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
