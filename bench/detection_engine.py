"""Detection engine throughput on the simulator's mixed scenario, against issue 12's 50,000 events/s target.

Parses the scenario's events once (validation is the intake's cost, not the engine's), then runs them
through a fresh `DetectionEngine` per round, as the service's consumer does per event: `process` and
`drain_cytokines`. Two populations: the four innate cells (`IMMUNE_ADAPTIVE_LAYER=false`) and the eight
cells the service starts with by default (innate + helper T, regulatory T, B, cytotoxic T). Prints the
best and median events per CPU second (the thread's CPU time: see `one_round`) over `--rounds` and the
ratio to the target; the threats raised are counted so a change that speeds the engine up by losing
findings shows. Single-threaded: on a shared machine the best round is the least disturbed one.

`--against DIR` also runs the bench on another source tree (e.g. `/work/main/app`, or the `app` dir of
`git archive <before> app | tar -x -C /tmp/before`), alternating child processes of the two trees so
both see the same neighbours, and prints the ratio of the best rounds: the before/after figure to quote
on a shared host.

    .venv/bin/python bench/detection_engine.py [--seed 3] [--rounds 5] [--population innate|adaptive|both]
    .venv/bin/python bench/detection_engine.py --against /tmp/before/app --alternations 3
    py-spy record -r 500 -f speedscope -o /tmp/engine.json -- .venv/bin/python bench/detection_engine.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime

from immune_core.cells.base import AnyEvent
from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.events.models import parse_event
from immune_core.simulator import generate
from immune_core.simulator.quality import ADAPTIVE_CELLS, INNATE_CELLS

TARGET_EVENTS_PER_S = 50_000
_FAR_FUTURE = datetime.fromisoformat("2100-01-01T00:00:00+00:00")

POPULATIONS: dict[str, Sequence[CellSpec]] = {"innate": INNATE_CELLS, "adaptive": ADAPTIVE_CELLS}


def one_round(cells: Sequence[CellSpec], events: list[AnyEvent]) -> tuple[float, int]:
    """CPU seconds (this thread's) to process ``events`` with a fresh engine, and the threats it raised.

    CPU time, not wall time: on a shared host the wall clock mostly measures the neighbours (a round
    waiting for a core), while the engine is single-threaded CPU work. An idle core runs it at the same
    rate in wall time."""
    engine = DetectionEngine(DetectionConfig(cells=list(cells)), wall_clock=lambda: _FAR_FUTURE)
    threats = 0
    started = time.thread_time()
    for event in events:
        threats += len(engine.process(event))
        engine.drain_cytokines()
    return time.thread_time() - started, threats


def measure(seed: int, rounds: int, names: list[str]) -> tuple[int, dict[str, tuple[list[float], int]]]:
    """Events in the scenario, and per population the events/s of each round and the threats raised."""
    events: list[AnyEvent] = [parse_event(e.event, now=_FAR_FUTURE) for e in generate("mixed", seed=seed)]
    results: dict[str, tuple[list[float], int]] = {}
    for name in names:
        rates: list[float] = []
        threats = 0
        for _ in range(rounds):
            elapsed, threats = one_round(POPULATIONS[name], events)
            rates.append(len(events) / elapsed)
        results[name] = (rates, threats)
    return len(events), results


def _child(tree: str, args: argparse.Namespace, names: list[str]) -> dict[str, tuple[list[float], int]]:
    # The other tree's code in a process of its own (PYTHONPATH first), reporting as JSON.
    env = {**os.environ, "PYTHONPATH": tree}
    command = [sys.executable, __file__, "--json", "--seed", str(args.seed), "--rounds", str(args.rounds)]
    command += ["--population", args.population]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return {name: (rates, threats) for name, (rates, threats) in json.loads(output).items() if name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--population", choices=[*POPULATIONS, "both"], default="both")
    parser.add_argument("--against", help="another source tree (the dir holding immune_core) to compare")
    parser.add_argument("--alternations", type=int, default=3, help="with --against: child runs per tree")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = list(POPULATIONS) if args.population == "both" else [args.population]

    if args.json:
        print(json.dumps(measure(args.seed, args.rounds, names)[1]))
        return
    print(f"mixed scenario (seed {args.seed}), load average {os.getloadavg()[0]:.1f} at the start")
    if not args.against:
        count, results = measure(args.seed, args.rounds, names)
        print(f"{count} events")
        for name, (rates, threats) in results.items():
            _report(name, rates, threats)
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "app")
    trees = {"before (--against)": args.against, "this tree": os.path.normpath(here)}
    collected: dict[str, dict[str, tuple[list[float], int]]] = {label: {} for label in trees}
    for _ in range(args.alternations):
        for label, tree in trees.items():
            for name, (rates, threats) in _child(tree, args, names).items():
                previous = collected[label].get(name, ([], threats))[0]
                collected[label][name] = (previous + rates, threats)
    for name in names:
        for label in trees:
            rates, threats = collected[label][name]
            _report(f"{name} {label}", rates, threats)
        before = max(collected["before (--against)"][name][0])
        after = max(collected["this tree"][name][0])
        print(f"{name}: this tree / before = x{after / before:.2f} (best rounds)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def _report(name: str, rates: list[float], threats: int) -> None:
    best = max(rates)
    print(
        f"{name:28s} best {best:8.0f} events/s, median {statistics.median(rates):8.0f}"
        f" ({best / TARGET_EVENTS_PER_S:.2f} of the {TARGET_EVENTS_PER_S:,} target), {threats} threats"
    )


if __name__ == "__main__":
    main()
