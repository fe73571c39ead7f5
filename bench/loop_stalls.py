"""Event-loop stalls of ``immune-core serve`` under open-loop ingest load, with the code that held the loop.

A heartbeat task on the service's loop ticks every 5 ms; a watchdog thread looks every 10 ms and, when the
heartbeat is older than ``--stall-ms``, samples the loop thread's Python stack. A long callback (a
detection slice, a synchronous parse, a GC pause) shows up as many samples of the same stack; a loop that
is merely descheduled by a busy host shows up in uvloop's own ``run`` frame. A sampling profiler cannot
tell these apart: it sees on-CPU time, not who made a request wait.

    python bench/loop_stalls.py [--rate 300] [--seconds 15] [--stall-ms 30] [--real]

The client is bench/http_latency.py's (open loop, keep-alive connections, single events).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_latency  # the sibling bench: its client and helpers


def _serve_with_watchdog(port: int, stall_s: float, out: Path) -> None:
    """Child process: the real CLI, plus the heartbeat and the watchdog; stacks written every second."""
    from immune_core import runtime as runtime_module
    from immune_core.cli import main

    beat = [time.perf_counter()]
    loop_thread: list[int] = []
    stalls: collections.Counter[str] = collections.Counter()

    async def heartbeat() -> None:
        loop_thread.append(threading.get_ident())
        while True:
            beat[0] = time.perf_counter()
            await asyncio.sleep(0.005)

    def watchdog() -> None:
        last_write = time.monotonic()
        while True:
            time.sleep(0.01)
            if loop_thread and time.perf_counter() - beat[0] > stall_s:
                frame = sys._current_frames().get(loop_thread[0])
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-12:]
                    stalls[
                        " <- ".join(f"{Path(s.filename).name}:{s.name}:{s.lineno}" for s in reversed(stack))
                    ] += 1
            if time.monotonic() - last_write > 1.0:
                out.write_text(json.dumps(stalls.most_common(40)))
                last_write = time.monotonic()

    original_start = runtime_module.Runtime.start

    async def start(self: runtime_module.Runtime) -> None:
        asyncio.get_running_loop().create_task(heartbeat())
        await original_start(self)

    runtime_module.Runtime.start = start  # type: ignore[method-assign,unused-ignore]
    threading.Thread(target=watchdog, daemon=True).start()
    sys.argv = ["immune-core", "serve", "--port", str(port)]
    main()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--stall-ms", type=float, default=30.0)
    parser.add_argument("--real", action="store_true", help="PostgreSQL/Redis/Kafka from scripts/services")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _serve_with_watchdog(int(args.child[0]), float(args.child[1]), Path(args.child[2]))
        return 0

    work = Path(tempfile.mkdtemp(prefix="immune-stalls-"))
    out = work / "stalls.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMMUNE_")}
    env |= {
        "IMMUNE_API_TOKENS": http_latency.TOKEN,
        "IMMUNE_DATA_DIR": str(work / "data"),
        "IMMUNE_RATE_LIMIT_PER_S": "0",
        "IMMUNE_LOG_LEVEL": "WARNING",
        "IMMUNE_KAFKA_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}",
    }
    if args.real:
        env.update(http_latency.real_services_env())
    port = http_latency.free_port()
    child = [sys.executable, __file__, "--child", str(port), str(args.stall_ms / 1000), str(out)]
    service = subprocess.Popen(child, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        http_latency.wait_http(port, "/health/ready")
        time.sleep(2.0)  # boot work (GC freeze, consumers joining) is not the load's
        before = dict(json.loads(out.read_text())) if out.exists() else {}
        started = time.monotonic()
        result = asyncio.run(
            http_latency.open_loop("ingest", port, args.rate, args.seconds, http_latency.ingest_request)
        )
        time.sleep(1.5)  # the watchdog writes every second
        print(
            f"{'real services' if args.real else 'embedded'}; {args.rate:g} req/s for {args.seconds:g} s "
            f"({time.monotonic() - started:.1f} s); load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"ingest p50/p95/p99 {result.pct(0.5):.1f}/{result.pct(0.95):.1f}/{result.pct(0.99):.1f} ms, "
            f"{result.ok} ok, {result.errors} errors"
        )
        counts = {stack: count - before.get(stack, 0) for stack, count in json.loads(out.read_text())}
        stalls = sorted(((s, c) for s, c in counts.items() if c > 0), key=lambda item: -item[1])
        total = sum(count for _, count in stalls)
        print(f"loop stalled > {args.stall_ms:g} ms: {total} watchdog samples (10 ms apart); top stacks:")
        for stack, count in stalls[:12]:
            print(f"  {count:5d}  {stack[:400]}")
    finally:
        service.terminate()
        service.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
