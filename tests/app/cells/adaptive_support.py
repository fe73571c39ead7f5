"""Builders for the adaptive-layer tests: engines with chosen cells, crafted memory, probe traffic."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.detection.threat import Threat
from immune_core.events.models import NetworkFlow

from tests.app.cells.cell_events import at, flow

ADAPTIVE = ("helper_t", "regulatory_t", "b_cell", "cytotoxic_t")


def engine(
    *types: str,
    memory: Iterable[MemoryDetector] = (),
    level: int = 0,
    params: dict[str, dict[str, Any]] | None = None,
) -> DetectionEngine:
    specs = [CellSpec(type=name, params=(params or {}).get(name, {})) for name in (types or ADAPTIVE)]
    built = DetectionEngine(DetectionConfig(cells=specs, max_cells=16))
    built.load_memory(memory)
    built.set_threat_level(level)
    return built


def detector(
    space: str,
    features: Sequence[float] | np.ndarray,
    category: str,
    *,
    radius: float = 0.25,
    detector_id: str = "d-1",
    antigen_type: str | None = None,
    stimulations: int = 1,
) -> MemoryDetector:
    kinds = {"source_ip": "source_ip", "upload": "host", "channel": "host", "process": "process"}
    return MemoryDetector(
        detector_id=detector_id,
        antigen_type=antigen_type or kinds[space],
        space=space,
        category=category,
        features=np.asarray(features, dtype=np.float64),
        radius=radius,
        stimulations=stimulations,
        severity="high",
        origin="test",
        created_at=at(0),
        updated_at=at(0),
        base_radius=radius,
    )


def probes(
    source: str, count: int, start_s: float = 0.0, gap_s: float = 8.0, target: str | None = None
) -> list[NetworkFlow]:
    """A scan: one failed probe of a new (address, port) of 10.0.1.0/24 every ``gap_s`` seconds (of new
    ports of ``target`` when given: a vertical scan)."""
    return [
        flow(
            start_s + index * gap_s,
            host_id="netsensor-1",
            src_ip=source,
            dst_ip=target or f"10.0.1.{index + 1}",
            dst_port=1000 + index,
            bytes_out=60,
            bytes_in=0,
            conn_state="timeout",
        )
        for index in range(count)
    ]


def run(built: DetectionEngine, events: Iterable[Any]) -> list[Threat]:
    return [threat for event in events for threat in built.process(event)]


def first(threats: list[Threat], cell: str = "b_cell") -> Threat | None:
    return next((t for t in threats if cell in t.cells), None)


def source_vector(events: Sequence[NetworkFlow]) -> np.ndarray:
    """The source_ip feature vector the adaptive layer computes for the events' (single) source."""
    profiled = engine("helper_t")
    run(profiled, events)
    return np.asarray(profiled.adaptive.profiles.sources[events[0].src_ip].vector())


def when(threat: Threat | None) -> datetime | None:
    return None if threat is None else threat.detected_at
