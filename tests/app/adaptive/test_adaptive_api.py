"""The adaptive layer end to end in the running service: events in over HTTP, a proposed response out.

``IMMUNE_ADAPTIVE_LAYER=true``: a port scan posted to ``/api/v1/events`` goes through the consumer group
and the engines; the neutrophil's finding activates a helper T cell, the cytotoxic T cell proposes to
block the scanner, the safe default (no validator configured) allows it, and ``GET /api/v1/responses``
shows the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from immune_core.settings import Settings

from tests.app.support import AUTH, port_scan, post_events, wait_for

ATTACKER = "198.51.100.66"


def test_a_scan_posted_to_the_service_gets_a_proposed_block(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> None:
    client = start_client(make_settings(adaptive_layer=True))
    types = [agent["type"] for agent in client.get("/api/v1/agents", headers=AUTH).json()["agents"]]
    assert types[4:] == ["helper_t", "regulatory_t", "b_cell", "cytotoxic_t"]
    events = port_scan(ATTACKER, ports=60)
    post_events(client, events, batch_size=50)

    def proposed() -> list[dict[str, Any]]:
        answer = client.get("/api/v1/responses", headers=AUTH)
        assert answer.status_code == 200
        return [d for d in answer.json()["decisions"] if d["target"] == ATTACKER]

    [decision] = wait_for(proposed, what="a response proposed for the scanner")
    assert decision["kind"] == "block_source" and decision["decision"] == "allow"
    assert decision["validator"] == "default-policy" and not decision["critical"] and not decision["degraded"]
    denied = client.get("/api/v1/responses", params={"decision": "deny"}, headers=AUTH).json()["decisions"]
    assert denied == []
    assert client.get("/api/v1/responses").status_code == 401
    assert client.get("/api/v1/responses", params={"limit": 0}, headers=AUTH).status_code == 422
