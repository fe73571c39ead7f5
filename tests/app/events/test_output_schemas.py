"""The adaptive layer's output topics have versioned JSON Schemas that match their models."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import jsonschema
import pytest
from immune_core.adaptive.state import CLONING_EXPANDED_TOPIC
from immune_core.events.schemas import output_models, output_schema_path, render_output_schema
from immune_core.responses.proposals import ResponseProposed
from immune_core.responses.validation import RESPONSES_PROPOSED_TOPIC, ProposedAction, default_verdict


@pytest.mark.parametrize("topic", [CLONING_EXPANDED_TOPIC, RESPONSES_PROPOSED_TOPIC])
def test_schema_file_matches_the_model(topic: str) -> None:
    # Regenerate with: python -m immune_core.events.schemas
    assert output_schema_path(topic).read_text(encoding="utf-8") == render_output_schema(topic)


def _proposed() -> dict[str, object]:
    action = ProposedAction.propose(
        "block_source",
        "45.133.7.10",
        threat_id=UUID(int=1),
        signature="port_scan:source_ip:45.133.7.10",
        category="port_scan",
        antigen_type="source_ip",
        severity="medium",
        confidence=0.8,
        reason="test",
        proposed_by="cytotoxic_t-1",
        proposed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    message = ResponseProposed(action=action, verdict=default_verdict(action, degraded=False, why="test"))
    loaded: dict[str, object] = json.loads(message.model_dump_json())
    return loaded


def test_a_published_message_validates_and_a_broken_one_does_not() -> None:
    schema = json.loads(output_schema_path(RESPONSES_PROPOSED_TOPIC).read_text(encoding="utf-8"))
    message = _proposed()
    jsonschema.validate(message, schema)
    broken = {**message, "verdict": {"decision": "maybe"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    with pytest.raises(ValueError):
        output_models()[RESPONSES_PROPOSED_TOPIC].model_validate(broken)
