"""The local service scripts, exercised for real: the shared set for reads, private sets for anything
that stops, kills or reconfigures a service."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.services import (
    SCRIPTS_DIR,
    LocalService,
    ServiceScriptError,
    ServiceSet,
    parse_env_lines,
    run_script,
)

pytestmark = pytest.mark.integration

PrivateServices = Callable[..., ServiceSet]


async def pg_scalar(url: str, query: str) -> object:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def kafka_round_trip(bootstrap: str, topic: str, payload: bytes) -> list[bytes]:
    """Produces one message to a fresh topic (auto-created) and reads the topic from the start."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=b"k")
    finally:
        await producer.stop()
    return await kafka_read_all(bootstrap, topic)


async def kafka_read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=15000, max_records=100)
        return [record.value for records in batches.values() for record in records if record.value]
    finally:
        await consumer.stop()


# --- the shared set ----------------------------------------------------------------------------------


def test_up_prints_export_lines_for_the_shared_set(service_env: dict[str, str]) -> None:
    completed = run_script("up.sh", ["postgres", "redis", "kafka"], {})
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines and all(line.startswith("export IMMUNE_") for line in lines)
    assert parse_env_lines(completed.stdout) == service_env
    assert service_env["IMMUNE_DATABASE_URL"].startswith("postgresql://immune:")
    assert service_env["IMMUNE_DATABASE_URL"].endswith("@127.0.0.1:15432/immune")
    assert service_env["IMMUNE_REDIS_URL"].startswith("redis://:")
    assert service_env["IMMUNE_REDIS_URL"].endswith("@127.0.0.1:16379/0")
    assert service_env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"


def test_start_twice_keeps_the_running_process(service_env: dict[str, str]) -> None:
    for name in ("postgres", "redis", "kafka"):
        service = LocalService(name)
        before = service.pid()
        service.start()
        assert before is not None
        assert service.pid() == before
        assert service.is_running()


def test_install_is_a_no_op_when_cached(service_env: dict[str, str]) -> None:
    kafka = LocalService("kafka")
    kafka.install()
    completed = kafka.run("install")
    assert "resolving" not in completed.stderr
    assert completed.stderr == ""


def test_unknown_command_is_a_usage_error() -> None:
    completed = run_script("redis.sh", ["explode"], {})
    assert completed.returncode == 2
    assert "usage:" in completed.stderr


def test_up_refuses_an_unknown_service() -> None:
    completed = run_script("up.sh", ["mongodb"], {})
    assert completed.returncode == 2
    assert "unknown service" in completed.stderr


async def test_postgres_accepts_the_generated_password_only(pg_url: str) -> None:
    assert await pg_scalar(pg_url, "SELECT current_user") == "immune"
    assert await pg_scalar(pg_url, "SELECT current_database()") == "immune"
    # The app user owns its database, so migrations can create tables.
    assert await pg_scalar(pg_url, "SELECT has_database_privilege('immune', 'CREATE')") is True
    wrong = pg_url.replace("postgresql://immune:", "postgresql://immune:not-the-password")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await pg_scalar(wrong, "SELECT 1")


async def test_redis_requires_the_password(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping() is True
        assert (await client.config_get("appendonly"))["appendonly"] == "yes"
    finally:
        await client.aclose()
    anonymous = aioredis.Redis(host="127.0.0.1", port=int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            await anonymous.ping()
    finally:
        await anonymous.aclose()


async def test_kafka_round_trip_on_an_auto_created_topic(kafka_bootstrap: str) -> None:
    topic = f"test.services.{uuid.uuid4().hex}"
    payload = json.dumps({"event_id": str(uuid.uuid4())}).encode()
    assert await kafka_round_trip(kafka_bootstrap, topic, payload) == [payload]


def test_secrets_are_private_files(service_env: dict[str, str]) -> None:
    state = Path(_default_state_dir())
    for relative in ("postgres/immune.password", "redis/redis.password", "redis/auth.conf"):
        mode = stat.S_IMODE((state / relative).stat().st_mode)
        assert mode == 0o600, f"{relative} has mode {oct(mode)}"
    redis_conf = (state / "redis" / "redis.conf").read_text()
    password = service_env["IMMUNE_REDIS_URL"].split(":")[2].split("@")[0]
    assert password not in redis_conf


def _default_state_dir() -> str:
    completed = subprocess.run(
        ["bash", "-c", f'source {SCRIPTS_DIR / "lib.sh"} && printf %s "$IMMUNE_STATE_DIR"'],
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


# --- private sets: stopping, killing, reconfiguring -------------------------------------------------


def test_a_never_started_service_reports_stopped(tmp_path: Path) -> None:
    service = ServiceSet.private(["redis"], tmp_path)["redis"]
    assert not service.is_running()
    assert service.pid() is None
    completed = service.run("status", expected=(3,))
    assert "stopped" in completed.stdout
    service.stop()  # stopping what is not running is fine


def test_start_fails_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    service_set = ServiceSet.private(["redis"], tmp_path)
    port = int(service_set.overrides["IMMUNE_REDIS_PORT"])
    with socket.create_server(("127.0.0.1", port)):
        with pytest.raises(ServiceScriptError, match="already in use"):
            service_set["redis"].start()
    assert not service_set["redis"].is_running()


async def test_stop_breaks_connections_and_restart_recovers_the_data(
    private_services: PrivateServices,
) -> None:
    services = private_services("postgres", "redis", "kafka")
    env = services.env()
    pg, rds, kafka = (
        env["IMMUNE_DATABASE_URL"],
        env["IMMUNE_REDIS_URL"],
        env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"],
    )
    assert ":15432/" not in pg and ":16379/" not in rds and kafka != "127.0.0.1:19092"

    conn = await asyncpg.connect(pg)
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')")
    await conn.close()
    client = aioredis.from_url(rds)
    await client.set("kept", "survives")
    await client.aclose()
    topic = f"test.restart.{uuid.uuid4().hex}"
    assert await kafka_round_trip(kafka, topic, b"survives") == [b"survives"]

    services.stop()
    for name in ("postgres", "redis", "kafka"):
        assert not services[name].is_running()
    services.stop()  # idempotent
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await pg_scalar(pg, "SELECT 1")
    client = aioredis.from_url(rds)
    with pytest.raises(RedisConnectionError):
        await client.ping()
    await client.aclose()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", int(kafka.rsplit(":", 1)[1]))

    for name in ("postgres", "redis", "kafka"):
        services[name].restart()
    assert services.env() == env  # same ports, same generated passwords
    assert await pg_scalar(pg, "SELECT v FROM kept") == "survives"
    client = aioredis.from_url(rds)
    assert await client.get("kept") == b"survives"
    await client.aclose()
    assert await kafka_read_all(kafka, topic) == [b"survives"]


async def test_start_recovers_after_a_crash(private_services: PrivateServices) -> None:
    services = private_services("postgres", "redis")
    env = services.env()
    for name in ("postgres", "redis"):
        services[name].kill()
        assert not services[name].is_running()
    services.start()
    assert await pg_scalar(env["IMMUNE_DATABASE_URL"], "SELECT 1") == 1
    client = aioredis.from_url(env["IMMUNE_REDIS_URL"])
    assert await client.ping() is True
    await client.aclose()


def test_prometheus_runs_a_caller_supplied_config(tmp_path: Path) -> None:
    config = tmp_path / "custom.yml"
    config.write_text(
        "global: {scrape_interval: 5s}\n"
        "scrape_configs:\n"
        "  - job_name: immune-test-job\n"
        "    static_configs: [{targets: ['127.0.0.1:9']}]\n"
    )
    service_set = ServiceSet.private(["prometheus"], tmp_path / "state")
    service_set.overrides["IMMUNE_PROMETHEUS_CONFIG"] = str(config)
    prometheus = LocalService("prometheus", service_set.overrides)
    prometheus.start()
    try:
        base = prometheus.env()["IMMUNE_PROMETHEUS_URL"]
        with urllib.request.urlopen(f"{base}/api/v1/status/config", timeout=10) as response:
            loaded = json.load(response)["data"]["yaml"]
        assert "immune-test-job" in loaded
    finally:
        prometheus.stop()
    assert not prometheus.is_running()


def _loaded_config(base: str) -> str:
    with urllib.request.urlopen(f"{base}/api/v1/status/config", timeout=10) as response:
        return str(json.load(response)["data"]["yaml"])


def test_prometheus_generated_config_reads_local_stacks_and_is_brought_up_to_date(tmp_path: Path) -> None:
    """The generated config has the file_sd job the local stacks publish to (immune-local-stacks);
    `start` on a running Prometheus whose generated config is older rewrites it and reloads; a
    config a caller put there (no generated mark) is never overwritten."""
    service_set = ServiceSet.private(["prometheus"], tmp_path / "state")
    prometheus = LocalService("prometheus", service_set.overrides)
    prometheus.start()
    try:
        base = prometheus.env()["IMMUNE_PROMETHEUS_URL"]
        config = tmp_path / "state" / "prometheus" / "prometheus.yml"
        assert "immune-local-stacks" in _loaded_config(base)
        assert f"{tmp_path / 'state' / 'prometheus' / 'file_sd'}/*.json" in _loaded_config(base)
        # An older generated config (as an earlier version of the script wrote it), loaded.
        old = config.read_text().split("  - job_name: immune-local-stacks")[0]
        config.write_text(old)
        urllib.request.urlopen(urllib.request.Request(f"{base}/-/reload", method="POST"), timeout=10).close()
        assert "immune-local-stacks" not in _loaded_config(base)
        prometheus.start()  # already running: brings the generated config up to date and reloads
        assert "immune-local-stacks" in _loaded_config(base)
        custom = "global: {scrape_interval: 5s}\nscrape_configs: []\n"
        config.write_text(custom)
        prometheus.start()
        assert config.read_text() == custom
    finally:
        prometheus.stop()


async def test_a_pid_file_naming_an_unrelated_live_process_is_stale(
    private_services: PrivateServices,
) -> None:
    """After a machine restart the state dir survives and its old pids may belong to other programs."""
    services = private_services("postgres", "redis")
    env = services.env()
    state = Path(services.overrides["IMMUNE_STATE_DIR"])
    services.stop()
    unrelated = await asyncio.create_subprocess_exec("sleep", "300")
    try:
        (state / "redis" / "redis.pid").write_text(f"{unrelated.pid}\n")
        (state / "postgres" / "data" / "postmaster.pid").write_text(f"{unrelated.pid}\n{state}\n")
        for name in ("postgres", "redis"):
            assert not services[name].is_running()
        services.start()
        assert unrelated.returncode is None  # start never touched it
    finally:
        unrelated.kill()
        await unrelated.wait()
    assert await pg_scalar(env["IMMUNE_DATABASE_URL"], "SELECT 1") == 1
    client = aioredis.from_url(env["IMMUNE_REDIS_URL"])
    assert await client.ping() is True
    await client.aclose()
