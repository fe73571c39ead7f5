"""How long the real Pulumi program takes under mocks, per stack, and how much each stack declares.

    .venv/bin/python bench/infra_mocks.py [--repeat 5]

Prints one line per stack: median / min / max wall time of a full mocked run (config validation,
every component, all registrations), resources declared, Kubernetes objects by kind.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

from immune_infra.render import RenderedStack, render_stack

STACKS = ("staging", "prod")


def timed_render(stack: str) -> tuple[float, RenderedStack]:
    started = time.perf_counter()
    rendered = render_stack(stack)
    return time.perf_counter() - started, rendered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs per stack (after one warm-up run)")
    args = parser.parse_args()

    for stack in STACKS:
        timed_render(stack)  # warm-up: imports and first-run caches are not the program's cost
    header = f"{'stack':<8} {'median_s':>9} {'min_s':>7} {'max_s':>7} {'resources':>10} {'k8s_objects':>12}"
    print(f"{header}  kinds")
    for stack in STACKS:
        runs = [timed_render(stack) for _ in range(args.repeat)]
        seconds = [elapsed for elapsed, _ in runs]
        rendered = runs[-1][1]
        kinds = Counter(manifest["kind"] for manifest in rendered.manifests)
        print(
            f"{stack:<8} {statistics.median(seconds):>9.3f} {min(seconds):>7.3f} {max(seconds):>7.3f} "
            f"{len(rendered.resources):>10} {len(rendered.manifests):>12}  "
            + ", ".join(f"{kind}={count}" for kind, count in sorted(kinds.items()))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
