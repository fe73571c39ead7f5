"""CPU per event of the HTTP intake's own steps for batches of 100, on the simulator's mixed scenario.

The steps a `POST /api/v1/events` batch costs in the service's process before the database and Kafka
(docs/performance.md, "Batches of 100 events"): `read_json` of the body, `parse_event` of each event,
and the text each event is stored and forwarded as (`event_json`; the intake serialised it twice before,
once for the row and once for the outbox, and once now). Measured in CPU time of this thread over the
scenario's 4,270 events (seed 3) in bodies of 100; prints µs per event per step and the events per CPU
second those steps alone allow (the batch target is 20,000 events/s for the whole service).

`--against DIR` runs the same measurement on another source tree (the dir holding `immune_core`) in
alternating child processes and prints the ratio, as bench/detection_engine.py does.

    .venv/bin/python bench/intake_cpu.py [--rounds 5]
    .venv/bin/python bench/intake_cpu.py --against /tmp/before/app --alternations 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import immune_core.storage.repository as repo
from immune_core.events.models import parse_event
from immune_core.events.text import read_json
from immune_core.simulator import generate

_FAR_FUTURE = datetime.fromisoformat("2100-01-01T00:00:00+00:00")
BATCH = 100


def _bodies(seed: int) -> list[bytes]:
    events = [labelled.event for labelled in generate("mixed", seed=seed)]
    return [json.dumps(events[i : i + BATCH]).encode() for i in range(0, len(events), BATCH)]


def _serialised_per_event() -> int:
    # 2 before the intake reused the stored text for the forward (forward_message had no payload).
    import inspect

    return 1 if "payload" in inspect.signature(repo.forward_message).parameters else 2


def measure(seed: int, rounds: int) -> dict[str, float]:
    """Best CPU µs per event of each step over ``rounds``."""
    bodies = _bodies(seed)
    count = sum(len(json.loads(body)) for body in bodies)
    serialised = _serialised_per_event()
    best: dict[str, float] = {}

    def timed(name: str, step: Callable[[list[Any]], list[Any]], items: list[Any]) -> list[Any]:
        started = time.thread_time()
        result = step(items)
        micros = (time.thread_time() - started) * 1e6 / count
        best[name] = min(best.get(name, float("inf")), micros)
        return result

    def parse_all(raw: list[Any]) -> list[Any]:
        return [parse_event(e, now=_FAR_FUTURE) for batch in raw for e in batch]

    def serialise_all(parsed: list[Any]) -> list[Any]:
        return [repo.event_json(e) for _ in range(serialised) for e in parsed]

    for _ in range(rounds):
        raw = timed("read_json", lambda items: [read_json(body) for body in items], bodies)
        parsed = timed("parse_event", parse_all, raw)
        timed(f"event_json x{serialised}", serialise_all, parsed)
    best["total"] = sum(best.values())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", help="another source tree (the dir holding immune_core) to compare")
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.seed, args.rounds)))
        return
    print(f"mixed scenario (seed {args.seed}) in bodies of {BATCH}; load average {os.getloadavg()[0]:.1f}")
    if not args.against:
        _report("this tree", measure(args.seed, args.rounds))
        return
    here = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "app"))
    trees = {"before (--against)": args.against, "this tree": here}
    best: dict[str, dict[str, float]] = {label: {} for label in trees}
    for _ in range(args.alternations):
        for label, tree in trees.items():
            command = [
                sys.executable,
                __file__,
                "--json",
                "--seed",
                str(args.seed),
                "--rounds",
                str(args.rounds),
            ]
            env = {**os.environ, "PYTHONPATH": tree}
            result = json.loads(
                subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            )
            for step, micros in result.items():
                best[label][step] = min(best[label].get(step, float("inf")), micros)
    for label in trees:
        _report(label, best[label])
    before, after = best["before (--against)"]["total"], best["this tree"]["total"]
    print(f"total CPU per event: this tree / before = x{after / before:.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def _report(label: str, steps: dict[str, float]) -> None:
    detail = ", ".join(f"{step} {micros:.1f}" for step, micros in steps.items() if step != "total")
    total = steps["total"]
    print(f"{label:20s} µs/event: {detail}; total {total:.1f} = {1e6 / total:,.0f} events per CPU second")


if __name__ == "__main__":
    main()
