"""Detection quality on the simulator: run a scenario through an engine and measure what it found.

Shared by ``bench/detection_quality.py`` (the figures in docs/detection.md) and the adaptive layer's
tests. ``INNATE_CELLS`` is the innate population alone; ``ADAPTIVE_CELLS`` adds helper T, regulatory T,
B and cytotoxic T cells. ``train_memory`` is the adaptive layer's earlier exposure: it runs the attacks
the innate layer catches (``MIXED_ATTACKS``) on training seeds and keeps the memory detectors the B cells
made (what the service keeps in PostgreSQL), to be loaded into the engines being measured.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.detection.threat import Threat
from immune_core.events.models import parse_event
from immune_core.responses.proposals import Proposal
from immune_core.simulator.attacks import EXPECTED_DETECTIONS, MIXED_ATTACKS
from immune_core.simulator.records import LabelledEvent
from immune_core.simulator.scenarios import generate
from immune_core.simulator.scoring import Score, score

INNATE_TYPES: tuple[str, ...] = ("neutrophil", "macrophage", "nk_cell", "dendritic")
ADAPTIVE_TYPES: tuple[str, ...] = ("helper_t", "regulatory_t", "b_cell", "cytotoxic_t")
INNATE_CELLS: tuple[CellSpec, ...] = tuple(CellSpec(type=name) for name in INNATE_TYPES)
ADAPTIVE_CELLS: tuple[CellSpec, ...] = tuple(CellSpec(type=name) for name in (*INNATE_TYPES, *ADAPTIVE_TYPES))
# Simulated runs are in the past; the engine's wall clock is set past them so no event is "from the future".
_FAR_FUTURE = datetime(2199, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Run:
    """One scenario run: its events, the threats raised, the score and the proposals made."""

    events: list[LabelledEvent]
    threats: list[Threat]
    result: Score
    proposals: list[Proposal] = field(default_factory=list)
    engine: DetectionEngine | None = None

    def time_to_detect(self, attack: str) -> float | None:
        """Seconds of event time from the attack's first event to the first threat naming it correctly."""
        mine = [e for e in self.events if e.label == attack]
        if not mine:
            return None
        antigen = mine[0].antigen
        began = min(parse_event(e.event, now=_FAR_FUTURE).timestamp for e in mine)
        expected = EXPECTED_DETECTIONS[attack]
        hits = [
            t.detected_at
            for t in self.threats
            if t.category in expected.categories and f"{t.antigen_type}:{t.antigen}" == antigen
        ]
        return (min(hits) - began).total_seconds() if hits else None


def engine_for(
    cells: Sequence[CellSpec], memory: Iterable[MemoryDetector] = (), threat_level: int = 0
) -> DetectionEngine:
    engine = DetectionEngine(DetectionConfig(cells=list(cells)), wall_clock=lambda: _FAR_FUTURE)
    engine.load_memory(copy.deepcopy(list(memory)))
    engine.set_threat_level(threat_level)
    return engine


def run_events(engine: DetectionEngine, events: list[LabelledEvent]) -> Run:
    threats: list[Threat] = []
    proposals: list[Proposal] = []
    for labelled in events:
        threats.extend(engine.process(parse_event(labelled.event, now=_FAR_FUTURE)))
        engine.drain_cytokines()
        proposals.extend(engine.drain_proposals())
    return Run(events, threats, score(events, threats), proposals, engine)


def run_scenario(
    scenario: str,
    seed: int,
    cells: Sequence[CellSpec] = INNATE_CELLS,
    memory: Iterable[MemoryDetector] = (),
    threat_level: int = 0,
) -> Run:
    return run_events(engine_for(cells, memory, threat_level), generate(scenario, seed))


def train_memory(seeds: Iterable[int], scenarios: Sequence[str] = MIXED_ATTACKS) -> list[MemoryDetector]:
    """Memory detectors the adaptive layer learns from the innate layer's catches on ``seeds``."""
    learned: dict[str, MemoryDetector] = {}
    for seed in seeds:
        for scenario in scenarios:
            run = run_scenario(scenario, seed, ADAPTIVE_CELLS, learned.values())
            assert run.engine is not None
            _, _, deleted = run.engine.drain_adaptive()
            for gone in deleted:
                learned.pop(gone, None)
            for detector in run.engine.memory_detectors():
                learned[detector.detector_id] = detector
    return list(learned.values())
