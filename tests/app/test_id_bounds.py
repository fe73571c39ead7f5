"""Every id the API takes in a path or query is bounded, the OpenAPI document states the bound, and an id
past it is a 422 before it reaches the engine or a store (issue 8)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from immune_core.agents.router import AGENT_ID_MAX_LENGTH

from tests.app.support import AUTH

AGENT_ROUTES = [
    ("GET", "/api/v1/agents/{}"),
    ("DELETE", "/api/v1/agents/{}"),
    ("POST", "/api/v1/agents/{}/clone"),
]


def _bounded(schema: dict[str, Any]) -> bool:
    """A string parameter with a length, pattern, enum or format bound (a number needs none here)."""
    options = [schema, *schema.get("anyOf", [])]
    strings = [s for s in options if s.get("type") == "string"]
    return all(
        "maxLength" in s or "pattern" in s or "enum" in s or s.get("format") in ("uuid", "date-time")
        for s in strings
    )


@pytest.mark.parametrize(("method", "template"), AGENT_ROUTES)
@pytest.mark.parametrize("agent_id", ["a%00b", "x" * 10_000, "neutrophil-1%20x", "-1"])
def test_a_hostile_agent_id_is_422_naming_the_parameter(
    client: TestClient, method: str, template: str, agent_id: str
) -> None:
    before = _agents(client)
    answer = client.request(method, template.format(agent_id), headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert "agent_id" in answer.text
    assert _agents(client) == before  # nothing removed or added by the refused request


def _agents(client: TestClient) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = client.get("/api/v1/agents", headers=AUTH).json()["agents"]
    return agents


def test_a_listed_agent_id_passes_the_bound_and_an_unknown_one_is_404(client: TestClient) -> None:
    agents = _agents(client)
    assert agents, "the default population has cells"
    for agent in agents:
        assert client.get(f"/api/v1/agents/{agent['id']}", headers=AUTH).status_code == 200
    assert client.get("/api/v1/agents/neutrophil-999999", headers=AUTH).status_code == 404


def test_the_openapi_document_states_the_agent_id_bound(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for method, template in AGENT_ROUTES:
        operation = spec["paths"][template.format("{agent_id}")][method.lower()]
        (param,) = [p for p in operation["parameters"] if p["name"] == "agent_id"]
        assert param["schema"]["maxLength"] == AGENT_ID_MAX_LENGTH and param["schema"]["pattern"]
        assert "422" in operation["responses"]


def test_every_path_and_query_parameter_in_the_openapi_document_is_bounded(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    unbounded = [
        f"{method.upper()} {path} {param['name']}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for param in operation.get("parameters", [])
        if param["in"] in ("path", "query") and not _bounded(param["schema"])
    ]
    assert not unbounded, unbounded


def test_the_bound_check_itself_finds_an_unbounded_string() -> None:
    assert not _bounded({"type": "string"})
    assert not _bounded({"anyOf": [{"type": "string"}, {"type": "null"}]})
    assert _bounded({"type": "string", "maxLength": 10}) and _bounded({"type": "integer"})
