"""docs/detection.md documents every cell parameter; a new parameter without a line there fails."""

import pytest
from immune_core.cells.base import Cell
from immune_core.detection.engine import DetectionConfig

from immune_suite.paths import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "detection.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("cell_type", sorted(Cell.types()))
def test_every_cell_type_and_parameter_is_documented(cell_type: str) -> None:
    assert f"`{cell_type}`" in DOC
    missing = [name for name in Cell.types()[cell_type].params_model.model_fields if f"`{name}`" not in DOC]
    assert missing == []


def test_engine_settings_are_documented() -> None:
    assert [name for name in DetectionConfig.model_fields if f"`{name}`" not in DOC] == []
