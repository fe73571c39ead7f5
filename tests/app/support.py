"""Helpers for the service's tests: the test token, event factories, polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from fastapi.testclient import TestClient

TOKEN = "test-token-0123456789"
OTHER_TOKEN = "other-token-9876543210"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def flow(
    *,
    src_ip: str = "203.0.113.7",
    dst_ip: str = "10.0.0.5",
    dst_port: int = 443,
    host_id: str = "web-01",
    at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "timestamp": (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "kind": "network_flow",
        "host_id": host_id,
        "src_ip": src_ip,
        "dst_ip": dst_ip,
        "dst_port": dst_port,
        "protocol": "tcp",
        "bytes_in": 1200,
        "bytes_out": 800,
    }
    event.update(extra)
    return event


def port_scan(
    attacker: str = "198.51.100.66", ports: int = 120, start: datetime | None = None
) -> list[dict[str, Any]]:
    """One source touching many ports of one host within seconds: the neutrophil's burst pattern."""
    begin = start or datetime.now(UTC) - timedelta(seconds=60)
    return [
        flow(
            src_ip=attacker,
            dst_port=1000 + i,
            at=begin + timedelta(milliseconds=200 * i),
            conn_state="rejected",
            bytes_in=0,
            bytes_out=60,
        )
        for i in range(ports)
    ]


def query_postgres(url: str, sql: str) -> list[Any]:
    """The rows (asyncpg Records) of one query on the PostgreSQL at `url`, over a connection of its own."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_for(
    check: Callable[[], Any], *, timeout_s: float = 60.0, interval_s: float = 0.2, what: str = ""
) -> Any:
    """Poll until ``check()`` is truthy (a generous deadline, never an assertion about speed)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or check}; last={last!r}")


def post_events(client: TestClient, events: list[dict[str, Any]], batch_size: int = 200) -> None:
    """POSTs `events` to /api/v1/events in batches of at most `batch_size`; each must be accepted (202)."""
    for start in range(0, len(events), batch_size):
        batch = {"events": events[start : start + batch_size]}
        response = client.post("/api/v1/events", json=batch, headers=AUTH)
        assert response.status_code == 202, response.text
