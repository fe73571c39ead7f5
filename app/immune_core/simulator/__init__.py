"""Seeded, labelled traffic for demos and detection tests: ``generate(scenario, seed, start)``."""

from immune_core.simulator.attacks import EXPECTED_DETECTIONS, MIXED_ATTACKS, ExpectedDetection
from immune_core.simulator.records import LabelledEvent
from immune_core.simulator.scenarios import (
    ADAPTIVE_SCENARIOS,
    DEFAULT_START,
    INNATE_SCENARIOS,
    SCENARIOS,
    generate,
    scenario_duration,
)

__all__ = [
    "ADAPTIVE_SCENARIOS",
    "DEFAULT_START",
    "EXPECTED_DETECTIONS",
    "INNATE_SCENARIOS",
    "MIXED_ATTACKS",
    "SCENARIOS",
    "ExpectedDetection",
    "LabelledEvent",
    "generate",
    "scenario_duration",
]
