"""Fixtures for the service's tests: embedded apps in-process, real-service databases, event factories."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from immune_core.api.app import create_app
from immune_core.settings import Settings

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


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            # TOKEN may do everything; OTHER_TOKEN is bare: the default roles (ingest+read).
            "api_tokens": f"{TOKEN}:admin,{OTHER_TOKEN}",
            "instance_id": "test-a",
            "deployment_color": "green",
            "version": "9.9.9-test",
            "lease_renew_interval_s": 0.2,
            "lease_ttl_s": 2.0,
            "homeostasis_interval_s": 0.2,
            "lymphnode_interval_s": 0.2,
            "outbox_poll_interval_s": 0.05,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def start_client() -> Iterator[Callable[[Settings], TestClient]]:
    clients: list[TestClient] = []

    def start(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings, configure_logs=False))
        client.__enter__()
        clients.append(client)
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> TestClient:
    return start_client(make_settings())


def _with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """The shared PostgreSQL, isolated in a fresh schema (dropped afterwards)."""
    import asyncio

    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    yield _with_search_path(pg_url, schema)
    asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def database_settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    """Settings for each store backend (PostgreSQL in its own schema of the shared server)."""
    if request.param == "sqlite":
        return make_settings()
    return make_settings(database_url=request.getfixturevalue("pg_schema_url"))
