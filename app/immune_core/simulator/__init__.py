"""Seeded, labelled traffic for demos and detection tests: ``generate(scenario, seed, start)``."""

from immune_core.simulator.attacks import EXPECTED_DETECTIONS, ExpectedDetection
from immune_core.simulator.records import LabelledEvent
from immune_core.simulator.scenarios import DEFAULT_START, SCENARIOS, generate

__all__ = [
    "DEFAULT_START",
    "EXPECTED_DETECTIONS",
    "SCENARIOS",
    "ExpectedDetection",
    "LabelledEvent",
    "generate",
]
