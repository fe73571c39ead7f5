"""Fixtures for the service's tests: embedded apps in-process, real-service databases, event factories."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from immune_core.api.app import create_app
from immune_core.settings import Settings
from immune_core.storage.database import Database
from immune_core.storage.factory import open_database
from immune_core.storage.migrations import migrate

from tests.app.service_process import ServiceProcess
from tests.app.support import OTHER_TOKEN, TOKEN, wait_for


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


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start `immune-core serve` processes: `launch(name, env, ready=True)`, each with its own data dir
    under tmp_path and the test TOKEN (admin); all are stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def start(name: str, env: dict[str, str], *, ready: bool = True) -> ServiceProcess:
        process = ServiceProcess(name, {**env, "IMMUNE_DATA_DIR": str(tmp_path / name)}, tmp_path, TOKEN)
        started.append(process.start())
        if ready:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()


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


@pytest.fixture
async def database(database_settings: Settings) -> AsyncIterator[Database]:
    """A migrated store for each backend of `database_settings` (SQLite; PostgreSQL in its own schema)."""
    db = open_database(database_settings)
    await db.connect()
    await migrate(db)
    yield db
    await db.close()
