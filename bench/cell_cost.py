"""What one cell's parameters and clones cost: detection throughput and traced memory per population.

Runs the simulator's `mixed` scenario through a `DetectionEngine` for each population variant and prints
events/s and the memory the engine holds afterwards (tracemalloc, so absolute figures are inflated by
tracing; compare rows). It is how the parameter bounds of docs/detection.md were checked:

    .venv/bin/python bench/cell_cost.py [--seed 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from typing import Any

from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.events.models import parse_event
from immune_core.simulator import generate

DEFAULT = [CellSpec(type=name) for name in ("neutrophil", "macrophage", "nk_cell", "dendritic")]


def _with_dendritic(**params: Any) -> list[CellSpec]:
    return [*DEFAULT[:3], CellSpec(type="dendritic", params=params)]


VARIANTS: dict[str, list[CellSpec]] = {
    "default population": DEFAULT,
    "dendritic population_size=100 (the bound)": _with_dendritic(population_size=100, max_antigens=20_000),
    "dendritic population_size=1000 (refused now)": [],  # built below, bypassing validation
    "default + 3 clones of each": DEFAULT,
}


def run(name: str, cells: list[CellSpec], events: list[Any], clones: int = 0) -> None:
    tracemalloc.start()
    engine = DetectionEngine(DetectionConfig(cells=cells, max_cells=64, max_cells_per_type=16))
    if name.startswith("dendritic population_size=1000"):
        from immune_core.cells.dendritic import DendriticCell, DendriticParams

        # The refused case, built without validation to show what the bound prevents.
        fields = {**DendriticParams().model_dump(), "population_size": 1000}
        engine._cells.append(DendriticCell(DendriticParams.model_construct(**fields), "dendritic-big"))
    for cell in list(engine.cells):
        for _ in range(clones):
            engine.clone_cell(cell.cell_id)
    started = time.perf_counter()
    for event in events:
        engine.process(event)
        engine.drain_cytokines()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rate = len(events) / elapsed
    print(f"{name:48s} {len(engine.cells):3d} cells  {rate:9.0f} events/s  peak {peak / 1e6:7.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    events = [parse_event(e.event) for e in generate("mixed", seed=args.seed)]
    print(f"{len(events)} events of the mixed scenario, seed {args.seed}")
    for name, cells in VARIANTS.items():
        run(name, cells or DEFAULT[:3], events, clones=3 if "clones" in name else 0)


if __name__ == "__main__":
    main()
