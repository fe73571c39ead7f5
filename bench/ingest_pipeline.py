"""Pipeline throughput: events per second from Kafka-in to threat-out, on real PostgreSQL and Kafka.

A private service set (PostgreSQL, Redis, Kafka on free ports, tests/services.py) keeps the figure free
of other traffic. The simulator's scenarios (seeded, several seeds) are produced to the input topics
first; then ``immune-core serve`` starts with an empty consumer group and the clock runs from the moment
it is ready until every event is stored and processed and the last threat is on
``immunis.threats.detected``.

    python bench/ingest_pipeline.py [--scenario mixed] [--seeds 4] [--timeout 900]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
# The repository root: the tests' helpers import by their package path (tests.services), as in the tests.
sys.path.insert(0, str(REPO))

from immune_core.events.models import TOPIC_BY_KIND, parse_event, partition_key  # noqa: E402
from immune_core.simulator import generate  # noqa: E402
from immune_core.simulator.scenarios import DEFAULT_DURATION_S  # noqa: E402

from tests.services import ServiceSet  # noqa: E402  (drives scripts/services)

TOKEN = "bench-" + uuid.uuid4().hex


async def produce(bootstrap: str, events: list[dict[str, Any]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        for raw in events:
            event = parse_event(raw)
            futures.append(
                await producer.send(
                    TOPIC_BY_KIND[event.kind], json.dumps(raw).encode(), key=partition_key(event).encode()
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def count_threats(bootstrap: str, expected: int, timeout_s: float) -> tuple[int, float]:
    """Reads the threat topic until ``expected`` threats are there; returns (count, when)."""
    consumer = AIOKafkaConsumer(
        "immunis.threats.detected", bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: set[str] = set()
    last_at = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    seen.add(json.loads(record.value)["threat_id"])
                    last_at = time.perf_counter()
    finally:
        await consumer.stop()
    return len(seen), last_at


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="mixed")
    parser.add_argument(
        "--seeds", type=int, default=4, help="independent networks generated (more = more events)"
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=DEFAULT_DURATION_S)
    events = [e.event for seed in range(args.seeds) for e in generate(args.scenario, seed=seed, start=start)]
    print(f"scenario {args.scenario} x {args.seeds} seeds: {len(events)} events; cpu count {os.cpu_count()}")

    services = ServiceSet.private(("postgres", "redis", "kafka"))
    print("starting a private PostgreSQL/Redis/Kafka set ...", flush=True)
    env = services.start()
    bootstrap = env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"]
    process: subprocess.Popen[bytes] | None = None
    try:
        # Topics created by the service's own rules first, so the producer writes to 3 partitions.
        produce_s = asyncio.run(produce(bootstrap, events[:1]))
        base = {k: v for k, v in os.environ.items() if not k.startswith("IMMUNE_")}
        port = _free_port()
        log = tempfile.NamedTemporaryFile(prefix="immune-bench-", suffix=".log", delete=False)
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "immune-core"), "serve", "--port", str(port)],
            env={**base, **env, "IMMUNE_API_TOKENS": TOKEN, "IMMUNE_LOG_LEVEL": "WARNING"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        _wait(lambda: client.get("/health/ready").status_code == 200, 120, "service ready")
        _wait(lambda: client.get("/api/v1/stats").json()["events_processed"] >= 1, 120, "first event")

        began = time.perf_counter()
        produce_s = asyncio.run(produce(bootstrap, events[1:]))
        _wait(
            lambda: client.get("/api/v1/stats").json()["events_processed"] >= len(events),
            args.timeout,
            "all events processed",
        )
        processed_at = time.perf_counter()
        stats = client.get("/api/v1/stats").json()
        threats, last_threat_at = asyncio.run(count_threats(bootstrap, stats["threats"], 120))
        elapsed = max(processed_at, last_threat_at) - began
        print(f"produced {len(events) - 1} events in {produce_s:.1f} s (producer alone)")
        print(
            f"stored+processed: {stats['events_processed']} events, threats: {stats['threats']} "
            f"(on immunis.threats.detected: {threats})"
        )
        print(
            f"Kafka-in -> threat-out: {elapsed:.1f} s, {(len(events) - 1) / elapsed:.0f} events/s end to end"
        )
        print(f"service log: {log.name}")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        services.discard()
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


if __name__ == "__main__":
    sys.exit(main())
