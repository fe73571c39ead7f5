"""The published JSON Schemas must say exactly what the models enforce."""

import copy
from typing import Any

import jsonschema
import pytest
from immune_core.events.models import EVENT_KINDS, EventValidationError, parse_event
from immune_core.events.schemas import load_schema, render_schema, schema_path
from immune_core.simulator import generate

from tests.app.events.support import endpoint_dict, flow_dict, intel_dict


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_schema_file_matches_the_model(kind: str) -> None:
    assert schema_path(kind).read_text(encoding="utf-8") == render_schema(kind), (  # type: ignore[arg-type]
        f"{schema_path(kind).name} is stale: run python -m immune_core.events.schemas"  # type: ignore[arg-type]
    )


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = load_schema(kind)  # type: ignore[arg-type]
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_simulated_events_of_every_kind_satisfy_their_schema() -> None:
    validators = {kind: _validator(kind) for kind in EVENT_KINDS}
    seen = set()
    for labelled in generate("mixed", seed=3)[:3000]:
        kind = labelled.event["kind"]
        seen.add(kind)
        errors = [error.message for error in validators[kind].iter_errors(labelled.event)]
        assert errors == [], labelled.event
    assert seen == set(EVENT_KINDS)


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    base = {"network_flow": flow_dict(), "endpoint": endpoint_dict(), "intel": intel_dict()}
    edits: list[tuple[str, str, object]] = [
        ("network_flow", "dst_port", 65536),
        ("network_flow", "dst_port", -1),
        ("network_flow", "dst_port", 1.5),
        ("network_flow", "src_ip", "300.1.1.1"),
        ("network_flow", "protocol", "TCP"),
        ("network_flow", "bytes_in", -3),
        ("network_flow", "conn_state", "open"),
        ("network_flow", "extra", 1),
        ("network_flow", "event_id", "xyz"),
        ("network_flow", "host_id", ""),
        ("network_flow", "host_id", "a b"),
        ("endpoint", "signed", "true"),
        ("endpoint", "process", ""),
        ("endpoint", "user", "u" * 256),
        ("endpoint", "sha256", "g" * 64),
        ("endpoint", "pid", -1),
        ("intel", "severity", "severe"),
        ("intel", "indicator_type", "url"),
        ("intel", "source", ""),
        ("network_flow", "dst_port", 65535),
        ("endpoint", "pid", 0),
        ("network_flow", "conn_state", None),
    ]
    for kind, field, value in edits:
        event = copy.deepcopy(base[kind])
        event[field] = value
        cases.append((kind, event))
    for kind, event in base.items():
        cases.append((kind, {k: v for k, v in event.items() if k != "kind"}))
        cases.append((kind, event))
    return cases


@pytest.mark.parametrize(("kind", "event"), _mutations())
def test_model_and_schema_agree_on_each_case(kind: str, event: dict[str, Any]) -> None:
    schema_ok = _validator(kind).is_valid(event)
    try:
        parse_event(event)
        model_ok = True
    except EventValidationError:
        model_ok = False
    assert schema_ok == model_ok
