"""Detection quality of the adaptive layer on the variants that stay under the innate thresholds.

Stated in docs/detection.md ("Detection quality: innate alone vs with the adaptive layer"): after
training on earlier exposure (the attacks the innate layer catches, seed 1000), each variant is detected
with its category and antigen with the adaptive layer and missed by the innate layer alone, and fewer
than 1 % of benign antigens are flagged, variants and benign baseline alike.
"""

from __future__ import annotations

import pytest
from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.simulator import ADAPTIVE_SCENARIOS
from immune_core.simulator.quality import ADAPTIVE_CELLS, INNATE_CELLS, run_scenario, train_memory

FALSE_POSITIVE_LIMIT = 0.01


@pytest.fixture(scope="module")
def memory() -> list[MemoryDetector]:
    learned = train_memory([1000])
    assert {d.category for d in learned} >= {"port_scan", "exfiltration", "beaconing", "unsigned_process"}
    return learned


@pytest.mark.parametrize("scenario", ADAPTIVE_SCENARIOS)
def test_the_variant_is_missed_by_the_innate_layer_and_caught_with_memory(
    scenario: str, memory: list[MemoryDetector]
) -> None:
    innate = run_scenario(scenario, 0, INNATE_CELLS)
    assert innate.result.detected == {scenario: False}
    adaptive = run_scenario(scenario, 0, ADAPTIVE_CELLS, memory)
    assert adaptive.result.detected == {scenario: True}, [(t.category, t.antigen) for t in adaptive.threats]
    assert adaptive.result.false_positive_rate < FALSE_POSITIVE_LIMIT, sorted(adaptive.result.false_positives)
    assert adaptive.time_to_detect(scenario) is not None


def test_the_adaptive_layer_keeps_the_benign_baseline_clean(memory: list[MemoryDetector]) -> None:
    for seed in range(2):
        result = run_scenario("benign", seed, ADAPTIVE_CELLS, memory).result
        assert len(result.benign_antigens) >= 250
        assert result.false_positive_rate < FALSE_POSITIVE_LIMIT, sorted(result.false_positives)
