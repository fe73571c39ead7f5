"""Memory soak: the service's RSS under the load test's ``soak`` shape (issue 12: RSS growth < 10 % over
an hour at 100 req/s).

The service (``immune-core serve``: one replica, its default workers) runs as a subprocess on the local
real PostgreSQL/Redis/Kafka (``--real``, the default; scripts/services) or on its embedded backends
(``--embedded``). The client sends single-event ``POST /api/v1/events`` open loop, following the rate
profile of ``immune_load.shapes.soak`` (a 30 s ramp, then a constant rate) scaled so that its plateau is
``--rate`` (default 100 req/s): each request has a planned send time, and latency is measured from that
time, so a stalled server shows up as latency (no coordinated omission).

    python bench/memory_soak.py [--real | --embedded] [--rate 100] [--minutes 60] [--sample-s 30]
                                [--warmup-minutes 5] [--json out.json] [--service-log soak.log]
                                [--env IMMUNE_X=value ...]

Every ``--sample-s`` seconds the bench reads the resident set size (VmRSS in /proc/<pid>/status) of the
service's whole process tree and prints a progress line (elapsed s, sent, errors, RSS MB). The first
``--warmup-minutes`` are warm-up (caches, pools and the allocator filling up) and are excluded: growth
% = (RSS at end - RSS after warm-up) / RSS after warm-up, with a least-squares slope (MB/hour) over the
samples after warm-up. Units: RSS in MB (10^6 bytes), latency in ms, rates in requests per second.

The client is one asyncio loop on keep-alive connections (http_latency's minimal HTTP/1.1 client). It
is checked not to be the bottleneck: the summary reports the achieved send rate against the planned
one, how late the sends were against their schedule, and the client's own CPU (user + system seconds
per wall second).

Exits non-zero when a request failed, or when there is no figure (no sample after warm-up is a failure,
never a pass). The verdict against the target is printed, not asserted: growth on a shared host is a
figure, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "load"))

from http_latency import (  # noqa: E402
    Connection,
    free_port,
    ingest_request,
    pct,
    service_environment,
    wait_http,
)
from immune_load.shapes import Stage, soak  # noqa: E402

TARGET_GROWTH_PCT = 10.0
SHAPE_PLATEAU_RPS = 100.0  # the soak shape's own plateau, scaled to --rate


def scaled_soak(duration_s: float, rate: float) -> list[Stage]:
    """The ``soak`` shape's stages with every target rate scaled so that its plateau is ``rate``."""
    return [Stage(s.until_s, s.rps * rate / SHAPE_PLATEAU_RPS) for s in soak(duration_s)]


def send_times(stages: list[Stage]) -> list[float]:
    """Planned send times (s from the start) of every request: request n goes when the integral of the
    piecewise-linear rate reaches n + 1 (so a ramp from 0 starts with its first request a little in)."""
    times: list[float] = []
    previous_t, previous_rps, done = 0.0, 0.0, 0.0
    for stage in stages:
        span = stage.until_s - previous_t
        if span <= 0:
            previous_rps = stage.rps
            continue
        slope = (stage.rps - previous_rps) / span
        total = previous_rps * span + slope * span * span / 2
        while len(times) + 1 <= done + total + 1e-9:
            need = len(times) + 1 - done
            if abs(slope) < 1e-12:
                tau = need / previous_rps
            else:
                tau = (-previous_rps + math.sqrt(previous_rps**2 + 2 * slope * need)) / slope
            times.append(previous_t + min(tau, span))
        previous_t, previous_rps, done = stage.until_s, stage.rps, done + total
    return times


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    processes: int
    sent: int
    errors: int


@dataclass
class Summary:
    warmup_s: float
    samples_after_warmup: int
    rss_after_warmup_mb: float
    rss_end_mb: float
    rss_max_mb: float
    growth_pct: float
    slope_mb_per_h: float

    @property
    def passed(self) -> bool:
        return self.growth_pct < TARGET_GROWTH_PCT


def summarize(samples: list[Sample], warmup_s: float) -> Summary | None:
    """Growth from the first sample at or after ``warmup_s`` to the last one, and the least-squares
    slope over those samples; None when there is no figure (fewer than two samples after warm-up)."""
    kept = [s for s in samples if s.t_s >= warmup_s]
    if len(kept) < 2:
        return None
    first, last = kept[0].rss_mb, kept[-1].rss_mb
    if first <= 0:
        return None
    hours = [s.t_s / 3600 for s in kept]
    if len(set(hours)) < 2:
        return None
    slope, _ = statistics.linear_regression(hours, [s.rss_mb for s in kept])
    return Summary(
        warmup_s=warmup_s,
        samples_after_warmup=len(kept),
        rss_after_warmup_mb=first,
        rss_end_mb=last,
        rss_max_mb=max(s.rss_mb for s in kept),
        growth_pct=100 * (last - first) / first,
        slope_mb_per_h=slope,
    )


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (parents from /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def rss_mb(pids: list[int]) -> float:
    """Sum of VmRSS over ``pids`` in MB (processes that exited meanwhile count 0)."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb * 1024 / 1e6


@dataclass
class Run:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    max_send_lag_ms: float = 0.0
    samples: list[Sample] = field(default_factory=list)


def load_text(load: tuple[float, float, float]) -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them."""
    return " / ".join(f"{value:.2f}" for value in load)


async def soak_run(port: int, service_pid: int, plan: list[float], duration_s: float, sample_s: float) -> Run:
    run = Run()
    idle: list[Connection] = [await Connection.open(port) for _ in range(8)]
    in_flight: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.05

    async def one(scheduled: float) -> None:
        conn = idle.pop() if idle else await Connection.open(port)
        while conn.reader.at_eof():  # the server closed this idle keep-alive connection: not an error
            conn.writer.close()
            conn = idle.pop() if idle else await Connection.open(port)
        try:
            status = await conn.request(ingest_request(port))
        except (OSError, asyncio.IncompleteReadError) as exc:
            run.errors += 1
            run.error_kinds[type(exc).__name__] += 1
            return
        run.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
        if 200 <= status < 300:
            run.ok += 1
        else:
            run.errors += 1
            run.error_kinds[f"HTTP {status}"] += 1
        idle.append(conn)

    async def sampler() -> None:
        next_at = start
        while True:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elapsed = time.perf_counter() - start
            pids = process_tree(service_pid)
            sample = Sample(round(elapsed, 3), round(rss_mb(pids), 3), len(pids), run.sent, run.errors)
            run.samples.append(sample)
            print(
                f"  {elapsed:7.0f} s  sent {run.sent:>8}  errors {run.errors:>5}  "
                f"RSS {sample.rss_mb:8.1f} MB ({len(pids)} processes)  in flight {len(in_flight)}",
                flush=True,
            )
            if elapsed >= duration_s:
                return
            next_at = min(next_at + sample_s, start + duration_s)

    sampling = asyncio.create_task(sampler())
    for offset in plan:
        scheduled = start + offset
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            run.max_send_lag_ms = max(run.max_send_lag_ms, -delay * 1000)
        task = asyncio.create_task(one(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        run.sent += 1
    if in_flight:
        await asyncio.gather(*in_flight)
    await sampling
    for conn in idle:
        conn.writer.close()
    return run


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    backends = parser.add_mutually_exclusive_group()
    backends.add_argument("--real", dest="real", action="store_true", default=True, help="(default)")
    backends.add_argument("--embedded", dest="real", action="store_false", help="SQLite + in-process bus")
    parser.add_argument("--rate", type=float, default=100.0, help="the soak plateau, req/s")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="write the samples and the summary here")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the service only")
    parser.add_argument(
        "--service-log", type=Path, help="the service's own log (JSON lines, WARNING and up) goes here"
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.minutes <= 0 or args.sample_s <= 0 or args.warmup_minutes < 0:
        parser.error("--rate, --minutes and --sample-s must be positive, --warmup-minutes not negative")
    duration_s, warmup_s = args.minutes * 60, args.warmup_minutes * 60
    if warmup_s >= duration_s:
        parser.error("--warmup-minutes must be shorter than --minutes")

    data_dir = tempfile.mkdtemp(prefix="immune-soak-")
    try:
        service_env = service_environment(data_dir, real=args.real, overrides=args.env, group_prefix="soak")
    except ValueError as exc:
        parser.error(str(exc))

    stages = scaled_soak(duration_s, args.rate)
    plan = send_times(stages)
    port = free_port()
    log_file = args.service_log.open("ab") if args.service_log else None
    service = subprocess.Popen(
        [str(BIN / "immune-core"), "serve", "--port", str(port)],
        env=service_env,
        stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
    )
    load_start = os.getloadavg()
    started_at = datetime.now(UTC)
    try:
        wait_http(port, "/health/ready")
        backend_name = "real PostgreSQL/Redis/Kafka" if args.real else "embedded SQLite + in-process bus"
        print(f"backends: {backend_name}; service pid {service.pid}; cpu count {os.cpu_count()}")
        print(
            f"soak shape: {' -> '.join(f'{s.rps:.0f}/s by {s.until_s:.0f} s' for s in stages)}; "
            f"{len(plan)} requests over {duration_s:.0f} s; RSS every {args.sample_s:.0f} s; "
            f"first {warmup_s:.0f} s are warm-up (excluded)"
        )
        print(
            f"service env: {' '.join(args.env) or '(defaults)'}; load average {load_text(load_start)}",
            flush=True,
        )
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        run = asyncio.run(soak_run(port, service.pid, plan, duration_s, args.sample_s))
        client_wall = time.perf_counter() - wall_before
        client_cpu = (time.process_time() - cpu_before) / client_wall
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
        if log_file:
            log_file.close()
    load_end = os.getloadavg()

    summary = summarize(run.samples, warmup_s)
    planned_rate = len(plan) / duration_s
    achieved_rate = run.sent / client_wall
    lat = {q: pct(run.latencies_ms, q) for q in (0.50, 0.95, 0.99)}
    print(f"\nmemory soak, {started_at:%Y-%m-%d %H:%M} UTC, {args.minutes:g} min at {args.rate:g} req/s")
    rows: list[tuple[str, str]] = [("backends", backend_name)]
    if summary is not None:
        rows += [
            (f"RSS after warm-up ({warmup_s:.0f} s excluded), MB", f"{summary.rss_after_warmup_mb:.1f}"),
            ("RSS at end, MB", f"{summary.rss_end_mb:.1f}"),
            ("RSS max after warm-up, MB", f"{summary.rss_max_mb:.1f}"),
            ("growth, %", f"{summary.growth_pct:+.2f}"),
            ("least-squares slope, MB/hour", f"{summary.slope_mb_per_h:+.2f}"),
            ("samples after warm-up", str(summary.samples_after_warmup)),
        ]
    rows += [
        ("requests sent / ok / errors", f"{run.sent} / {run.ok} / {run.errors}"),
        ("latency p50 / p95 / p99, ms", f"{lat[0.50]:.1f} / {lat[0.95]:.1f} / {lat[0.99]:.1f}"),
        ("send rate achieved / planned, req/s", f"{achieved_rate:.1f} / {planned_rate:.1f}"),
        ("client: max send lag, ms; CPU, s/s", f"{run.max_send_lag_ms:.1f}; {client_cpu:.3f}"),
        ("load average start -> end (1/5/15 min)", f"{load_text(load_start)} -> {load_text(load_end)}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if run.error_kinds:
        print(f"  errors: {dict(run.error_kinds)}")
    if summary is None:
        verdict = "NO DATA: fewer than two RSS samples after warm-up (a failure, not a pass)"
    else:
        verdict = f"{'PASS' if summary.passed else 'FAIL'}: growth {summary.growth_pct:+.2f} % "
        verdict += f"(target < {TARGET_GROWTH_PCT:g} %)"
    print(f"verdict: {verdict}")

    if args.json:
        document = {
            "started_at": started_at.isoformat(),
            "backends": backend_name,
            "rate": args.rate,
            "minutes": args.minutes,
            "sample_s": args.sample_s,
            "warmup_s": warmup_s,
            "stages": [asdict(s) for s in stages],
            "sent": run.sent,
            "ok": run.ok,
            "errors": run.errors,
            "error_kinds": dict(run.error_kinds),
            "latency_ms": {"p50": lat[0.50], "p95": lat[0.95], "p99": lat[0.99]},
            "achieved_rate": achieved_rate,
            "planned_rate": planned_rate,
            "client_cpu_s_per_s": client_cpu,
            "max_send_lag_ms": run.max_send_lag_ms,
            "load_average": {"start": load_start, "end": load_end},
            "summary": None if summary is None else {**asdict(summary), "passed": summary.passed},
            "samples": [asdict(s) for s in run.samples],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if summary is not None and run.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
