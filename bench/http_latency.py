"""HTTP ingest latency of ``POST /api/v1/events`` at fixed open-loop rates, next to a bare ASGI hello.

Open loop: requests are sent on a fixed schedule whatever the server's pace, and latency is measured
from the scheduled send time, so a stalled server shows up as latency (no coordinated omission).
Both servers run as ``uvicorn`` subprocesses with one worker on this machine; the service uses its
embedded backends by default, or the local real services with ``--real`` (scripts/services env).

    python bench/http_latency.py [--rates 100,500,1000] [--seconds 10] [--real] [--batch 1]
                                 [--profile out.txt] [--env IMMUNE_X=value ...]

``--env`` passes a setting to the service only (e.g. ``IMMUNE_GC_GEN0_THRESHOLD=0`` for the collector
as CPython sets it up), so two runs compare a change, each against its own baseline.

``--profile`` runs the service under py-spy (the dev extra) and writes its collapsed stacks (one line per
stack, sample count last; the format flamegraph.pl and speedscope read) to the file, with a summary of
the top functions by inclusive share printed after the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN = "bench-token-" + uuid.uuid4().hex[:8]


@dataclass
class Result:
    target: str
    rate: float
    sent: int
    ok: int
    errors: int
    latencies_ms: list[float]
    wall_s: float
    error_kinds: Counter[str]

    def pct(self, q: float) -> float:
        return pct(self.latencies_ms, q)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; NaN when there is none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Connection:
    """A keep-alive HTTP/1.1 connection with a minimal response parser (the client must not be the
    bottleneck at 1000 req/s on a small machine, which rules out general-purpose clients)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        return status


def _event() -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "kind": "network_flow",
        "host_id": "bench-01",
        "src_ip": "10.9.8.7",
        "dst_ip": "10.0.0.1",
        "dst_port": 443,
        "protocol": "tcp",
        "bytes_in": 1000,
        "bytes_out": 500,
    }


def ingest_request(port: int, batch: int = 1) -> bytes:
    """One event, or ``{"events": [...]}`` holding ``batch`` events when ``batch`` > 1."""
    document = _event() if batch == 1 else {"events": [_event() for _ in range(batch)]}
    body = json.dumps(document).encode()
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def hello_request(port: int) -> bytes:
    body = b"{}"
    return (
        f"POST /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def open_loop(target: str, port: int, rate: float, seconds: float, build: object) -> Result:
    requests = [build(port) for _ in range(int(rate * seconds))]  # type: ignore[operator]
    idle: list[Connection] = [await Connection.open(port) for _ in range(8)]
    latencies: list[float] = []
    errors = 0
    ok = 0
    kinds: Counter[str] = Counter()

    async def one(raw: bytes, scheduled: float) -> None:
        nonlocal errors, ok
        conn = idle.pop() if idle else await Connection.open(port)
        while conn.reader.at_eof():  # the server closed this idle keep-alive connection: not an error
            conn.writer.close()
            conn = idle.pop() if idle else await Connection.open(port)
        try:
            status = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors += 1
            kinds[type(exc).__name__] += 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)
        if 200 <= status < 300:
            ok += 1
        else:
            errors += 1
            kinds[f"HTTP {status}"] += 1
        idle.append(conn)

    tasks = []
    start = time.perf_counter() + 0.05
    for index, raw in enumerate(requests):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(raw, scheduled)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for conn in idle:
        conn.writer.close()
    return Result(target, rate, len(requests), ok, errors, latencies, wall, kinds)


def wait_http(port: int, path: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered 200 on :{port}{path}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def real_services_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name in ("postgres", "redis", "kafka"):
        out = subprocess.run(
            ["bash", str(REPO / "scripts/services" / f"{name}.sh"), "env"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key.strip()] = value.strip()
    return env


def host_environment() -> dict[str, str]:
    """This process's environment without its IMMUNE_* settings (a bench's servers get only their own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IMMUNE_")}


def service_environment(
    data_dir: str, *, real: bool, overrides: list[str], group_prefix: str
) -> dict[str, str]:
    """The environment of a benchmarked ``immune-core serve``: this process's, minus its IMMUNE_* settings,
    with the bench token, no rate limit, its own consumer group, the real services' settings when ``real``,
    then ``overrides`` (``KEY=VALUE`` strings). Raises ValueError on an override that is not ``KEY=VALUE``."""
    env = host_environment()
    env.update(
        {
            "IMMUNE_API_TOKENS": TOKEN,
            "IMMUNE_DATA_DIR": data_dir,
            "IMMUNE_RATE_LIMIT_PER_S": "0",
            "IMMUNE_LOG_LEVEL": "WARNING",
            "IMMUNE_KAFKA_GROUP_ID": f"{group_prefix}-{uuid.uuid4().hex[:8]}",
        }
    )
    if real:
        env.update(real_services_env())
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env takes KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat fields 14-15, in clock ticks):
    CPU per request is the figure a shared, contended machine distorts least."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gc_pauses(port: int) -> dict[str, tuple[float, float]]:
    """The service's ``immune_gc_pause_seconds`` so far: generation -> (collections, seconds)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, slot in (("_count", 0), ("_sum", 1)):
            head = f"immune_gc_pause_seconds{suffix}{{generation=" + '"'
            if line.startswith(head):
                generation = line[len(head)]
                out.setdefault(generation, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    return {g: (v[0], v[1]) for g, v in out.items()}


def start_profiler(out: Path | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy attached to the service (none without ``--profile``); it writes the file when the service
    exits at the end of the run."""
    if out is None:
        return None
    command = [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200", "--nonblocking"]
    return subprocess.Popen([*command, "--pid", str(pid), "--output", str(out)], stdout=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 25) -> None:
    """Print the functions with the largest inclusive share of samples (a function counted once per stack)."""
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:  # py-spy writes after its child exits
        time.sleep(0.2)
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        for frame in set(stack.split(";")):
            inclusive[frame] += samples
    print(f"\nprofile: {total} samples in {path}; top {top} frames by inclusive share")
    for frame, samples in inclusive.most_common(top):
        print(f"  {100 * samples / max(total, 1):5.1f}%  {frame[:150]}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1, help="events per ingest request (1: a single event)")
    parser.add_argument("--real", action="store_true", help="PostgreSQL/Redis/Kafka from scripts/services")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the service only")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the service to this file")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    data_dir = tempfile.mkdtemp(prefix="immune-bench-")
    try:
        service_env = service_environment(data_dir, real=args.real, overrides=args.env, group_prefix="bench")
    except ValueError as exc:
        parser.error(str(exc))
    service_port, hello_port = free_port(), free_port()
    processes = [
        subprocess.Popen(
            [str(BIN / "immune-core"), "serve", "--port", str(service_port)],
            env=service_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                str(BIN / "uvicorn"),
                "--app-dir",
                str(REPO / "bench"),
                "hello_app:app",
                "--port",
                str(hello_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=host_environment(),
        ),
    ]
    spy = None
    try:
        wait_http(service_port, "/health/ready")
        wait_http(hello_port, "/")
        spy = start_profiler(args.profile, processes[0].pid)
        backends = "real PostgreSQL/Redis/Kafka" if args.real else "embedded SQLite + in-process bus"
        print(f"backends: {backends}; {args.seconds:.0f} s per rate; cpu count {os.cpu_count()}")
        print(f"service env: {' '.join(args.env) or '(defaults)'}; load average {os.getloadavg()[0]:.1f}")
        if args.batch > 1:
            print(f"ingest requests hold {args.batch} events each: events/s = rate x {args.batch}")
        columns = [("target", "<14"), ("rate/s", ">8"), ("sent", ">7"), ("ok", ">7"), ("err", ">5")]
        columns += [("p50 ms", ">9"), ("p95 ms", ">9"), ("p99 ms", ">9"), ("cpu ms/req", ">11")]
        header = "".join(f"{name:{align}}" for name, align in columns)
        print(header)
        results: dict[tuple[str, int], Result] = {}
        for rate in rates:
            for target, port, build in (
                ("hello (ASGI)", hello_port, hello_request),
                ("ingest", service_port, functools.partial(ingest_request, batch=args.batch)),
            ):
                pid = processes[0 if port == service_port else 1].pid
                gc_before = gc_pauses(port) if port == service_port else {}
                cpu_before = cpu_seconds(pid)
                result = asyncio.run(open_loop(target, port, rate, args.seconds, build))
                cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / max(result.sent, 1)
                results[(target, rate)] = result
                gc_note = ""
                if port == service_port:
                    gc_after = gc_pauses(port)
                    gc_note = "  gc " + " ".join(
                        f"g{g}:{gc_after[g][0] - gc_before.get(g, (0.0, 0.0))[0]:.0f}x/"
                        f"{1000 * (gc_after[g][1] - gc_before.get(g, (0.0, 0.0))[1]):.0f}ms"
                        for g in sorted(gc_after)
                    )
                print(
                    f"{target:<14}{rate:>8}{result.sent:>7}{result.ok:>7}{result.errors:>5}"
                    f"{result.pct(0.50):>9.2f}{result.pct(0.95):>9.2f}{result.pct(0.99):>9.2f}"
                    f"{cpu_ms:>11.2f}"
                    + gc_note
                    + (f"  errors: {dict(result.error_kinds)}" if result.error_kinds else "")
                )
        print("\nratio ingest / hello")
        for rate in rates:
            ingest, hello = results[("ingest", rate)], results[("hello (ASGI)", rate)]
            ratios = [ingest.pct(q) / hello.pct(q) for q in (0.5, 0.95, 0.99)]
            print(
                f"  {rate:>5}/s  p50 x{ratios[0]:.1f}  p95 x{ratios[1]:.1f}  p99 x{ratios[2]:.1f}  "
                f"(mean ingest {statistics.fmean(ingest.latencies_ms):.2f} ms)"
            )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        if spy is not None:
            spy.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.profile:
        summarize_profile(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
