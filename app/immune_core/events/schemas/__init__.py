"""Versioned JSON Schemas of the input events and of the adaptive layer's output topics, generated
from the pydantic models (``cloning_expanded.v1.json``: ``immunis.cloning.expanded``;
``responses_proposed.v1.json``: ``immunis.responses.proposed``).

``<kind>.v<version>.json`` files in this directory are the published contract for producers. They are
written by ``python -m immune_core.events.schemas`` and a test fails when a model and its file differ.
Generated schemas use JSON Schema draft 2020-12; cross-field rules that JSON Schema cannot express
(an intel indicator matching its ``indicator_type``, ``expires_at`` after ``timestamp``) are enforced
by the models only and named in each schema's ``$comment``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from immune_core.events.models import EVENT_KINDS, MODEL_BY_KIND, SCHEMA_VERSION, EventKind

SCHEMA_DIR = Path(__file__).resolve().parent
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_CROSS_FIELD_RULES: dict[EventKind, str] = {
    "network_flow": "IP addresses are normalised to their canonical text form.",
    "endpoint": "IP addresses are normalised; domains lower-cased without a trailing dot.",
    "intel": "Also enforced by the service: indicator must be a valid value of indicator_type "
    "(IP address, domain name, or SHA-256 hex digest) and expires_at must be later than timestamp.",
}


_CLOCK_RULE = (
    "Every instant is from 1970-01-01T00:00:00Z and before 2200-01-01T00:00:00Z (formatMinimum, "
    "formatExclusiveMaximum, and the year pattern); timestamp must also not be later than the service's "
    "clock plus IMMUNE_MAX_CLOCK_SKEW_S (default 300 s). Text fields refuse NUL and lone surrogates."
)


def schema_path(kind: EventKind, version: int = SCHEMA_VERSION) -> Path:
    return SCHEMA_DIR / f"{kind}.v{version}.json"


def generate_schema(kind: EventKind) -> dict[str, Any]:
    schema = MODEL_BY_KIND[kind].model_json_schema(mode="validation")
    # The discriminator has a default so that code can build models without it, but on the wire every
    # event must say what it is.
    schema["required"] = sorted({*schema.get("required", []), "kind"})
    return {
        "$schema": _DIALECT,
        "$id": f"urn:immune-core:events:{kind}:v{SCHEMA_VERSION}",
        "$comment": f"{_CROSS_FIELD_RULES[kind]} {_CLOCK_RULE}",
        **schema,
    }


def render_schema(kind: EventKind) -> str:
    return json.dumps(generate_schema(kind), indent=2, sort_keys=True) + "\n"


def load_schema(kind: EventKind, version: int = SCHEMA_VERSION) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_path(kind, version).read_text(encoding="utf-8"))
    return loaded


def output_models() -> dict[str, type[BaseModel]]:
    """The adaptive layer's output topics and their message models (imported late: they import cells)."""
    from immune_core.adaptive.state import CLONING_EXPANDED_TOPIC, ClonalExpansion
    from immune_core.responses.proposals import ResponseProposed
    from immune_core.responses.validation import RESPONSES_PROPOSED_TOPIC

    return {CLONING_EXPANDED_TOPIC: ClonalExpansion, RESPONSES_PROPOSED_TOPIC: ResponseProposed}


def output_schema_path(topic: str, version: int = 1) -> Path:
    """``immunis.cloning.expanded`` -> ``cloning_expanded.v1.json``."""
    return SCHEMA_DIR / f"{'_'.join(topic.split('.')[1:])}.v{version}.json"


def render_output_schema(topic: str) -> str:
    schema = output_models()[topic].model_json_schema(mode="serialization")
    document = {"$schema": _DIALECT, "$id": f"urn:immune-core:topics:{topic}:v1", **schema}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_schemas() -> list[Path]:
    written = []
    for kind in EVENT_KINDS:
        path = schema_path(kind)
        path.write_text(render_schema(kind), encoding="utf-8")
        written.append(path)
    for topic in output_models():
        path = output_schema_path(topic)
        path.write_text(render_output_schema(topic), encoding="utf-8")
        written.append(path)
    return written
