"""Detection quality per scenario: the innate layer alone vs with the adaptive layer.

For every attack scenario of the simulator and ``--seeds`` seeds each, prints the detection rate (runs in
which the attack was raised with its category and antigen), the median and worst time to detect (event
time from the attack's first event to the first correct threat) and the false positives (benign
antigens named by any threat, over the benign antigens of those runs); then the false positives over
``--seeds`` runs of the benign baseline. The adaptive layer first learns from earlier exposure: the
attacks the innate layer catches (``MIXED_ATTACKS``), on training seeds 1000.. (never the seeds measured),
and its memory detectors are loaded into each measured engine, as the service loads them from PostgreSQL.

    .venv/bin/python bench/detection_quality.py [--seeds 5] [--train-seeds 2] [--scenario NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

from immune_core.simulator import SCENARIOS
from immune_core.simulator.quality import ADAPTIVE_CELLS, INNATE_CELLS, run_scenario, train_memory


def _fmt(seconds: list[float]) -> str:
    if not seconds:
        return "       -       -"
    return f"{statistics.median(seconds):8.0f}{max(seconds):8.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="measured seeds per scenario (0..N-1)")
    parser.add_argument("--train-seeds", type=int, default=2, help="training seeds (1000..) for the memory")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    args = parser.parse_args()

    started = time.perf_counter()
    memory = train_memory(range(1000, 1000 + args.train_seeds))
    by_category: dict[str, int] = {}
    for detector in memory:
        by_category[detector.category] = by_category.get(detector.category, 0) + 1
    categories = ", ".join(f"{name} {count}" for name, count in sorted(by_category.items()))
    print(
        f"training: {len(memory)} memory detectors from seeds 1000-{999 + args.train_seeds} "
        f"({categories}) in {time.perf_counter() - started:.0f} s"
    )
    scenarios = args.scenario or [name for name in SCENARIOS if name not in ("benign", "mixed")]
    header = (
        f"{'scenario':22s} {'layer':9s} {'detected':>9s} {'ttd med s':>8s} {'max s':>7s} {'false pos':>14s}"
    )
    print(header)
    print("-" * len(header))
    for scenario in [*scenarios, "benign"]:
        for layer, cells, loaded in (("innate", INNATE_CELLS, []), ("adaptive", ADAPTIVE_CELLS, memory)):
            hits = 0
            ttds: list[float] = []
            flagged = benign = 0
            for seed in range(args.seeds):
                run = run_scenario(scenario, seed, cells, loaded)
                flagged += len(run.result.false_positives)
                benign += len(run.result.benign_antigens)
                if scenario == "benign":
                    continue
                ttd = run.time_to_detect(scenario)
                if ttd is not None:
                    hits += 1
                    ttds.append(ttd)
            detected = "-" if scenario == "benign" else f"{hits}/{args.seeds}"
            print(f"{scenario:22s} {layer:9s} {detected:>9s} {_fmt(ttds)} {f'{flagged}/{benign}':>14s}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
