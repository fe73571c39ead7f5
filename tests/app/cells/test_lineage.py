"""Clones are one piece of evidence (issue 8, "Evidence"): cloning a cell must not raise a threat's
confidence, nor repeat its signals and cytokines; independent cells still combine (noisy-OR)."""

from __future__ import annotations

import pytest
from immune_core.cells.base import PopulationError
from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.detection.threat import merge_confidence

from tests.app.cells.cell_events import flow, intel

BAD = "185.220.101.4"


def _engine() -> DetectionEngine:
    engine = DetectionEngine(DetectionConfig(cooldown_s=0, cells=[CellSpec(type="macrophage")]))
    engine.process(intel(0, BAD, 3600, severity="high"))
    return engine


def test_cloning_a_cell_does_not_raise_the_confidence_of_its_finding() -> None:
    engine = _engine()
    [alone] = engine.process(flow(10, src_ip=BAD))
    assert alone.confidence == 0.85
    first = engine.clone_cell("macrophage-1")
    second = engine.clone_cell(first.cell_id)  # a clone of a clone: still the first cell's lineage
    assert first.lineage == second.lineage == "macrophage-1"
    [cloned] = engine.process(flow(20, src_ip=BAD))
    assert cloned.confidence == 0.85, "three identical cells are one piece of evidence"
    assert [e.cell for e in cloned.evidence] == ["macrophage-1", "macrophage-2", "macrophage-3"]
    assert {e.lineage for e in cloned.evidence} == {"macrophage-1"}


def test_clones_keep_their_lineage_after_the_original_is_removed() -> None:
    engine = _engine()
    twin = engine.clone_cell("macrophage-1")
    engine.clone_cell(twin.cell_id)
    engine.remove_cell("macrophage-1")
    [threat] = engine.process(flow(10, src_ip=BAD))
    assert threat.confidence == 0.85


def test_independent_cells_still_combine() -> None:
    engine = _engine()
    engine.add_cell("macrophage", {"confidence_by_severity": {"high": 0.5}})
    [threat] = engine.process(flow(10, src_ip=BAD))
    assert threat.confidence == pytest.approx(1 - 0.15 * 0.5)


def test_clones_do_not_repeat_signals_or_cytokines() -> None:
    engine = _engine()
    engine.process(flow(10, src_ip=BAD))
    alone = len(engine.drain_cytokines())
    engine.clone_cell("macrophage-1")
    engine.clone_cell("macrophage-1")
    engine.process(flow(20, src_ip=BAD))
    assert alone == 1 and len(engine.drain_cytokines()) == alone


def test_merge_confidence_is_noisy_or_across_lineages_and_max_within() -> None:
    assert merge_confidence([]) == 0.0
    assert merge_confidence([("a", 0.85), ("a", 0.85), ("a", 0.6)]) == 0.85
    assert merge_confidence([("a", 0.85), ("b", 0.6)]) == round(1 - 0.15 * 0.4, 4)


def test_clone_and_create_respect_the_caps() -> None:
    engine = DetectionEngine(DetectionConfig(max_cells=6, max_cells_per_type=2))
    engine.clone_cell("neutrophil-1")
    with pytest.raises(PopulationError, match="max_cells_per_type"):
        engine.clone_cell("neutrophil-1")
    engine.add_cell("macrophage")
    with pytest.raises(PopulationError, match="max_cells"):
        engine.add_cell("nk_cell")


def test_the_last_cell_of_a_required_kind_is_removed_only_when_forced() -> None:
    engine = DetectionEngine()
    with pytest.raises(PopulationError, match="last neutrophil"):
        engine.remove_cell("neutrophil-1")
    assert engine.missing_types() == []
    engine.remove_cell("neutrophil-1", force=True)
    assert engine.missing_types() == ["neutrophil"]
