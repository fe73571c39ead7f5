"""What the adaptive layer costs: detection throughput, and HTTP ingest latency with the layer off and on.

Two sections, each a ratio of the layer on (``IMMUNE_ADAPTIVE_LAYER=true``: the four innate cells and
helper T, regulatory T, B and cytotoxic T) to the layer off (the four innate cells), measured in the
same run on the same traffic, so a loaded machine moves both sides alike:

* ``engine`` -- events per second of one ``DetectionEngine`` (as the consumer drives it: process, then
  drain everything) over the load gate's traffic (``immune_suite.gates.sample_events``, batches of 20
  re-stamped simulator events), per CPU second of this process. Rounds alternate off/on; the best
  round of each counts.
* ``loop`` -- the consumer group's ``handle`` (SQLite store, in-process bus) fed batches of 200 such
  events, the size a Kafka poll returns (``IMMUNE_CONSUMER_BATCH_SIZE``), while a probe task asks the
  event loop for a turn every millisecond: how long the loop is held between two turns (what every
  HTTP request's every step waits for while detection runs), with detection handing the loop back every
  5 ms (``consumer.DETECTION_SLICE_S``, the default) and without (one slice per batch). Also the CPU
  milliseconds per batch.
* ``http`` -- two ``immune-core serve`` processes (one worker each, embedded SQLite + in-process bus, or
  the local real services with ``--real``), one per setting, driven in alternating rounds by an open
  loop of ``POST /api/v1/events`` requests of 20 such events at ``--rate`` requests/s (latency from the
  scheduled send time, so a stalled event loop shows). The consumer group detects what is ingested in
  the same process and event loop, which is how detection reaches the ingest path's latency. The
  events detected per process (``/api/v1/stats``) show that detection kept up.

    .venv/bin/python bench/adaptive_overhead.py [--sections engine,loop,http] [--rate 40] [--seconds 8]
        [--rounds 2] [--real]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "bench"))

from http_latency import free_port, open_loop, pct, real_services_env, wait_http  # noqa: E402
from immune_core.detection.engine import DetectionConfig, DetectionEngine  # noqa: E402
from immune_core.events.models import TOPIC_BY_KIND, parse_event  # noqa: E402
from immune_core.simulator.quality import ADAPTIVE_CELLS, INNATE_CELLS  # noqa: E402

from immune_suite.gates import sample_events  # noqa: E402

TOKEN = "bench-token-" + uuid.uuid4().hex[:8]
BATCH = 20  # events per request, the load gate's default (IMMUNE_LOAD_BATCH_SIZE)


# -- engine ------------------------------------------------------------------------------------------
def engine_rate(layer_on: bool, events: list[Any]) -> float:
    cells = list(ADAPTIVE_CELLS if layer_on else INNATE_CELLS)
    engine = DetectionEngine(DetectionConfig(cells=cells))
    # CPU time of this process: on a shared machine, wall time mostly measures the neighbours.
    started = time.process_time()
    for event in events:
        engine.process(event)
        engine.drain_cytokines()
        engine.drain_adaptive()
        engine.drain_proposals()
        engine.drain_recall_queries()
    return len(events) / (time.process_time() - started)


def engine_section(batches: int, rounds: int) -> None:
    rng = random.Random(7)
    events = [parse_event(raw) for _ in range(batches) for raw in sample_events.generate(BATCH, rng)]
    best = {False: 0.0, True: 0.0}
    ratios: list[float] = []
    print(f"engine: {len(events)} events of the load gate's traffic per round, {rounds} rounds")
    for index in range(rounds):
        rates = {}
        for layer_on in (False, True):
            rates[layer_on] = rate = engine_rate(layer_on, events)
            best[layer_on] = max(best[layer_on], rate)
            print(f"  round {index + 1} layer {'on ' if layer_on else 'off'} {rate:9.0f} events/CPU-s")
        ratios.append(rates[True] / rates[False])
    print(
        f"  best: off {best[False]:.0f} events/CPU-s, on {best[True]:.0f} events/CPU-s; "
        f"on/off throughput x{best[True] / best[False]:.2f} (best), x{statistics.median(ratios):.2f} "
        "(median of the rounds' ratios)"
    )


# -- loop -------------------------------------------------------------------------------------------
async def held_loop(
    layer_on: bool, slice_s: float, batches: list[list[dict[str, Any]]]
) -> tuple[list[float], float]:
    """Milliseconds the loop was held between the probe's turns, and CPU ms per batch, for one setting."""
    from immune_core.observability.metrics import Metrics
    from immune_core.processing.consumer import DetectionConsumer
    from immune_core.processing.counters import IntakeCounters
    from immune_core.processing.engine_host import EngineHost
    from immune_core.settings import Settings
    from immune_core.storage.factory import open_database
    from immune_core.storage.migrations import migrate
    from immune_core.transport.bus import InboundMessage
    from immune_core.transport.inprocess import InProcessBus

    data_dir = tempfile.mkdtemp(prefix="immune-bench-loop-")
    database = open_database(Settings(data_dir=Path(data_dir), database_url=None))
    await database.connect()
    await migrate(database)
    metrics = Metrics()
    cells = list(ADAPTIVE_CELLS if layer_on else INNATE_CELLS)
    engine = EngineHost(database, metrics, template=DetectionEngine(DetectionConfig(cells=cells)))
    consumer = DetectionConsumer(
        database=database,
        bus=InProcessBus(),
        engine=engine,
        metrics=metrics,
        counters=IntakeCounters(),
        group_id="bench",
        batch_size=len(batches[0]),
        detection_slice_s=slice_s,
    )
    held: list[float] = []
    running = True

    async def probe() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            held.append((now - last) * 1000)
            last = now

    prober = asyncio.create_task(probe())
    cpu = 0.0
    topic = TOPIC_BY_KIND["network_flow"]
    try:
        for number, batch in enumerate(batches):
            messages = [
                InboundMessage(topic, 0, number * len(batch) + offset, None, json.dumps(raw).encode())
                for offset, raw in enumerate(batch)
            ]
            started = time.process_time()
            await consumer.handle(messages)
            cpu += time.process_time() - started
    finally:
        running = False
        await prober
        await database.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return held, cpu * 1000 / len(batches)


def loop_section(batches: int, rounds: int) -> None:
    rng = random.Random(5)
    size = 200
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for raw in sample_events.generate(batches * size, rng):
        by_topic.setdefault(TOPIC_BY_KIND[raw["kind"]], []).append(raw)
    # One topic per batch, as a Kafka poll of one partition returns; flows are most of the traffic.
    flows = by_topic[TOPIC_BY_KIND["network_flow"]]
    work = [flows[i : i + size] for i in range(0, len(flows) - size + 1, size)]
    print(f"\nloop: {len(work)} batches of {size} network flows per setting and round, {rounds} rounds")
    print(f"  {'layer':<6}{'slice':>9}{'held p50':>10}{'p99':>9}{'max ms':>9}{'cpu ms/batch':>14}")
    for _ in range(rounds):
        for layer_on in (False, True):
            for slice_s in (3600.0, 0.005):
                held, cpu = asyncio.run(held_loop(layer_on, slice_s, work))
                label = "batch" if slice_s > 60 else f"{slice_s * 1000:g} ms"
                setting = "on" if layer_on else "off"
                print(
                    f"  {setting:<6}{label:>9}{pct(held, 0.5):>10.1f}{pct(held, 0.99):>9.1f}"
                    f"{max(held):>9.1f}{cpu:>14.1f}"
                )


# -- http --------------------------------------------------------------------------------------------
def ingest_request(port: int, rng: random.Random) -> bytes:
    body = json.dumps({"events": sample_events.generate(BATCH, rng)}).encode()
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def processed(port: int) -> int:
    stats = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    return int(stats.json()["events_processed"])


def wait_drained(port: int, expected: int, timeout_s: float = 60.0) -> int:
    """Waits until detection has processed ``expected`` events (or the timeout); returns the count."""
    deadline = time.monotonic() + timeout_s
    count = processed(port)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        count = processed(port)
    return count


def http_section(rate: float, seconds: float, rounds: int, real: bool) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("IMMUNE_")}
    data_dirs: list[str] = []
    processes: list[subprocess.Popen[bytes]] = []
    ports: dict[bool, int] = {}
    extra = real_services_env() if real else {}
    try:
        for layer_on in (False, True):
            data_dir = tempfile.mkdtemp(prefix="immune-bench-adaptive-")
            data_dirs.append(data_dir)
            ports[layer_on] = port = free_port()
            env = {
                **base_env,
                **extra,
                "IMMUNE_API_TOKENS": TOKEN,
                "IMMUNE_DATA_DIR": data_dir,
                "IMMUNE_RATE_LIMIT_PER_S": "0",
                "IMMUNE_LOG_LEVEL": "WARNING",
                "IMMUNE_ADAPTIVE_LAYER": "true" if layer_on else "false",
                "IMMUNE_KAFKA_GROUP_ID": f"bench-adaptive-{uuid.uuid4().hex[:8]}",
                "IMMUNE_INSTANCE_ID": f"bench-adaptive-{'on' if layer_on else 'off'}",
            }
            command = [str(BIN / "immune-core"), "serve", "--port", str(port)]
            processes.append(
                subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in ports.values():
            wait_http(port, "/health/ready", timeout_s=120)
        backends = "real PostgreSQL/Redis/Kafka" if real else "embedded SQLite + in-process bus"
        print(
            f"\nhttp: {backends}; {rate:g} requests/s of {BATCH} events, {seconds:g} s per round, "
            f"{rounds} rounds per setting, cpu count {os.cpu_count()}"
        )
        rng = random.Random(11)
        pooled: dict[bool, list[float]] = {False: [], True: []}
        for index in range(rounds):
            for layer_on in (False, True):
                port = ports[layer_on]
                before = processed(port)
                build = functools.partial(ingest_request, rng=rng)
                result = asyncio.run(open_loop("ingest", port, rate, seconds, build))
                latencies, errors = result.latencies_ms, result.errors
                done = wait_drained(port, before + int(rate * seconds) * BATCH)
                pooled[layer_on] += latencies
                setting = "on " if layer_on else "off"
                print(
                    f"  round {index + 1} layer {setting} p50 {pct(latencies, 0.5):8.1f} ms"
                    f"  p95 {pct(latencies, 0.95):8.1f}  p99 {pct(latencies, 0.99):8.1f}  errors {errors}"
                    f"  detected {done - before} events"
                )
        print("  pooled:")
        for layer_on in (False, True):
            values = pooled[layer_on]
            setting = "on " if layer_on else "off"
            print(
                f"    layer {setting} p50 {pct(values, 0.5):8.1f} ms  p95 {pct(values, 0.95):8.1f}"
                f"  p99 {pct(values, 0.99):8.1f}  mean {statistics.fmean(values):8.1f}"
            )
        ratios = [pct(pooled[True], q) / pct(pooled[False], q) for q in (0.5, 0.95, 0.99)]
        print(f"  on/off latency: p50 x{ratios[0]:.2f}  p95 x{ratios[1]:.2f}  p99 x{ratios[2]:.2f}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        for data_dir in data_dirs:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default="engine,loop,http")
    parser.add_argument("--batches", type=int, default=300, help="engine: batches of 20 events per round")
    parser.add_argument("--loop-batches", type=int, default=8, help="loop: batches of 200 events")
    parser.add_argument("--rate", type=float, default=40.0, help="http: requests per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="http: seconds per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--real", action="store_true", help="http: PostgreSQL/Redis/Kafka from scripts/services"
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if "engine" in sections:
        engine_section(args.batches, args.rounds)
    if "loop" in sections:
        loop_section(args.loop_batches, args.rounds)
    if "http" in sections:
        http_section(args.rate, args.seconds, args.rounds, args.real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
