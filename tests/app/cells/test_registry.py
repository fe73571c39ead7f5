from typing import Any, ClassVar

import pytest
from immune_core.cells.base import AnyEvent, Cell, CellConfigError, CellContext, CellParams
from immune_core.cells.cytokine import Cytokine, cytokine_topic
from immune_core.cells.observation import CellOutput

from tests.app.cells.cell_events import flow


def test_every_cell_module_registers_its_type() -> None:
    assert {"neutrophil", "macrophage", "nk_cell", "dendritic"} <= set(Cell.types())


def test_unknown_parameters_are_rejected_by_name() -> None:
    with pytest.raises(CellConfigError) as caught:
        Cell.create("neutrophil", {"window_s": -1, "frobnicate": True}, "n-1")
    message = caught.value.message
    assert message.startswith("invalid parameters for neutrophil: ")
    assert "window_s: Input should be greater than 0" in message
    assert "frobnicate: unknown parameter" in message


def test_unknown_cell_type_lists_the_known_ones() -> None:
    with pytest.raises(CellConfigError, match=r"unknown cell type 'eosinophil'; known types: .*neutrophil"):
        Cell.create("eosinophil", {}, "e-1")


def test_a_new_cell_type_is_one_subclass_away() -> None:
    class EchoParams(CellParams):
        greeting: str = "hi"

    class EchoCell(Cell[EchoParams]):
        cell_type: ClassVar[str] = "test_echo"
        params_model = EchoParams

        def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
            return CellOutput()

    try:
        cell = Cell.create("test_echo", {"greeting": "hello"}, "echo-1")
        assert isinstance(cell, EchoCell)
        assert cell.describe()["params"] == {"greeting": "hello"}
    finally:
        Cell._registry.pop("test_echo")


def test_clone_copies_learned_state_but_not_counters() -> None:
    from immune_core.detection.intel import IntelStore

    cell: Any = Cell.create("neutrophil", {}, "neutrophil-1")
    cell.observe(flow(0, src_ip="10.9.9.9"), CellContext(now=flow(0).timestamp, intel=IntelStore()))
    twin = cell.clone("neutrophil-2")
    assert twin.cell_id == "neutrophil-2"
    assert twin.state_summary() == {"tracked_sources": 1}
    assert twin.counters == {}
    assert cell.describe()["counters"]["events_observed"] == 1


def test_cytokine_ttl_and_topic() -> None:
    emitted = flow(0).timestamp
    cytokine = Cytokine.emit("il8", "neutrophil-1", "source_ip", "1.2.3.4", emitted, {"n": 1})
    assert cytokine.topic == cytokine_topic("il8") == "immunis.cytokines.il8"
    assert cytokine.ttl_s == 60.0
    assert not cytokine.is_expired(flow(59.9).timestamp)
    assert cytokine.is_expired(flow(60).timestamp)
    same = Cytokine.emit("il8", "neutrophil-1", "source_ip", "1.2.3.4", emitted, {"n": 1})
    assert same.cytokine_id == cytokine.cytokine_id
