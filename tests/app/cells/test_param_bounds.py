"""Every cell parameter is bounded on both sides, and docs/detection.md states the bounds the code enforces.

The bounds table in the docs is compared with the one rendered here from the parameter models, so a
bound changed in code without the docs (or the reverse) fails this test.
"""

from __future__ import annotations

from typing import Any

import pytest
from immune_core.cells.base import Cell, CellConfigError

from immune_suite.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs" / "detection.md"


def _side(prop: dict[str, Any], inclusive: str, exclusive: str, op: str) -> str:
    if inclusive in prop:
        return (
            f"{op}= {prop[inclusive]:g}" if isinstance(prop[inclusive], float) else f"{op}= {prop[inclusive]}"
        )
    if exclusive in prop:
        return f"{op} {prop[exclusive]:g}"
    return ""


def _bounds(prop: dict[str, Any]) -> tuple[str, str]:
    kind = prop.get("type")
    if "enum" in prop:
        return f"one of {'/'.join(str(value) for value in prop['enum'])}", "(enumerated)"
    if kind in ("integer", "number"):
        return _side(prop, "minimum", "exclusiveMinimum", ">"), _side(
            prop, "maximum", "exclusiveMaximum", "<"
        )
    if kind == "array":
        items = prop.get("items", {})
        each = f"each {items.get('minimum')}..{items.get('maximum')}"
        return f">= {prop.get('minItems', 0)} items", f"<= {prop.get('maxItems')} items, {each}"
    if kind == "object":
        keys = "/".join(prop.get("propertyNames", {}).get("enum", []))
        values = prop.get("additionalProperties", {})
        return f"keys {keys}", f"values {values.get('minimum')}..{values.get('maximum')}"
    return "false", "true"


def bounds_table() -> list[str]:
    rows = ["| cell | parameter | lower | upper |", "|---|---|---|---|"]
    for name, cls in Cell.types().items():
        for param, prop in cls.params_model.model_json_schema()["properties"].items():
            lower, upper = _bounds(prop)
            rows.append(f"| `{name}` | `{param}` | {lower} | {upper} |")
    return rows


def test_every_numeric_parameter_has_both_bounds() -> None:
    missing = [row for row in bounds_table()[2:] if "|  |" in row]
    assert missing == []


def test_docs_state_the_bounds_the_code_enforces() -> None:
    documented = DOCS.read_text(encoding="utf-8")
    absent = [row for row in bounds_table() if row not in documented]
    assert absent == [], "docs/detection.md bounds table is stale; rows expected:\n" + "\n".join(
        bounds_table()
    )


@pytest.mark.parametrize(
    ("cell_type", "params", "field"),
    [
        ("dendritic", {"population_size": 1000}, "population_size"),
        ("dendritic", {"max_antigens": 1_000_000_000}, "max_antigens"),
        ("dendritic", {"population_size": 100, "max_antigens": 100_000}, "(params)"),
        ("neutrophil", {"max_sources": 10**9}, "max_sources"),
        ("neutrophil", {"auth_ports": list(range(65))}, "auth_ports"),
        ("neutrophil", {"guess_ports": [70000]}, "guess_ports.0"),
        ("nk_cell", {"max_beacon_pairs": 10**9}, "max_beacon_pairs"),
        ("nk_cell", {"beacon_history": 10**6}, "beacon_history"),
        ("nk_cell", {"beacon_min_events": 20, "beacon_history": 12}, "(params)"),
        ("macrophage", {"confidence_by_severity": {"high": 7}}, "confidence_by_severity.high"),
        ("macrophage", {"confidence_by_severity": {"extreme": 0.5}}, "confidence_by_severity.extreme.[key]"),
        ("nk_cell", {"min_std": float("inf")}, "min_std"),
    ],
)
def test_out_of_bounds_parameters_are_refused_by_name(
    cell_type: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(CellConfigError) as refused:
        Cell.validate_params(cell_type, params)
    assert field in {error["field"] for error in refused.value.errors}, refused.value.errors
