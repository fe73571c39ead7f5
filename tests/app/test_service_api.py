"""The HTTP API in embedded mode (SQLite, in-process bus), through the real ASGI app and its lifespan."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from immune_core.settings import Settings
from starlette.websockets import WebSocketDisconnect

from tests.app.support import AUTH, OTHER_TOKEN, TOKEN, flow, port_scan, post_events, wait_for


def test_live_and_ready_report_identity_and_dependencies(client: TestClient) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "ok", "version": "9.9.9-test", "instance_id": "test-a", "color": "green"}
    ready = client.get("/health/ready").json()
    assert ready["ready"] is True
    assert ready["dependencies"].pop("consumer") in {"starting", "ok"}
    assert ready["dependencies"] == {"database": "ok", "redis": "ok", "kafka": "ok"}


def test_every_response_carries_color_and_version_headers(client: TestClient) -> None:
    for response in (
        client.get("/health/live"),
        client.get("/api/v1/stats"),  # 401
        client.get("/api/v1/stats", headers=AUTH),
        client.get("/no/such/route"),
    ):
        assert response.headers["x-immune-color"] == "green"
        assert response.headers["x-immune-version"] == "9.9.9-test"


def test_an_unhandled_exception_is_a_500_that_still_says_who_answered(
    make_settings: Callable[..., Settings],
) -> None:
    """A crash in a route is the candidate's failure: its 500 carries the same identity as a 200."""
    from immune_core.api.app import create_app

    app = create_app(make_settings(), configure_logs=False)

    @app.get("/api/v1/test-only-boom")
    async def boom() -> None:
        raise RuntimeError("a bug in the candidate")

    with TestClient(app, raise_server_exceptions=True) as client:
        response = client.get("/api/v1/test-only-boom", headers=AUTH)
        assert response.status_code == 500
        assert response.json() == {"error": "internal_error", "message": "internal error"}
        assert "a bug" not in response.text  # no internals leak out
        assert response.headers["x-immune-color"] == "green"
        assert response.headers["x-immune-version"] == "9.9.9-test"
        assert response.headers["x-immune-instance"] == "test-a"
        assert client.get("/health/live").status_code == 200  # the app keeps serving


def test_missing_token_is_401_wrong_token_is_403_without_detail(client: TestClient) -> None:
    missing = client.get("/api/v1/threats")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"error": "unauthorized", "message": "unauthorized"}
    wrong = client.get("/api/v1/threats", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 403
    assert wrong.json() == {"error": "forbidden", "message": "forbidden"}
    malformed = client.get("/api/v1/threats", headers={"Authorization": f"Basic {TOKEN}"})
    assert malformed.status_code == 401
    assert (
        client.get("/api/v1/threats", headers={"Authorization": f"Bearer {OTHER_TOKEN}"}).status_code == 200
    )


def test_metrics_and_health_need_no_token(client: TestClient) -> None:
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "immune_http_request_duration_seconds" in metrics.text


def test_single_event_is_stored_once_and_duplicates_are_reported(client: TestClient) -> None:
    event = flow()
    first = client.post("/api/v1/events", json=event, headers=AUTH)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 1
    again = client.post("/api/v1/events", json={"events": [event, flow()]}, headers=AUTH)
    assert again.status_code == 202
    body = again.json()
    assert body["accepted"] == 1 and body["duplicates"] == 1
    assert body["duplicate_ids"] == [event["event_id"]]
    stats = client.get("/api/v1/stats", headers=AUTH).json()
    assert stats["events_stored"] == 2
    assert stats["events_accepted"] == 2 and stats["events_duplicate"] == 1
    wait_for(
        lambda: client.get("/api/v1/stats", headers=AUTH).json()["events_processed"] == 2, what="processed"
    )


def test_invalid_event_gets_a_precise_422_and_nothing_of_the_batch_is_stored(client: TestClient) -> None:
    bad = flow(dst_port=70000)
    response = client.post("/api/v1/events", json={"events": [flow(), bad]}, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_event"
    assert body["details"][0]["index"] == 1
    assert "dst_port" in body["message"]
    assert client.get("/api/v1/stats", headers=AUTH).json()["events_stored"] == 0


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/v1/events", content=b"{nope", headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


def test_oversized_body_and_batch_are_413(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> None:
    client = start_client(make_settings(max_body_bytes=4096, max_batch_events=3))
    big = client.post(
        "/api/v1/events", content=b"x" * 5000, headers={**AUTH, "content-type": "application/json"}
    )
    assert big.status_code == 413
    batch = client.post("/api/v1/events", json={"events": [flow() for _ in range(4)]}, headers=AUTH)
    assert batch.status_code == 413
    assert batch.json()["error"] == "batch_too_large"
    assert client.get("/api/v1/stats", headers=AUTH).json()["events_stored"] == 0


def test_rate_limit_answers_429_with_retry_after_per_token(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> None:
    client = start_client(make_settings(rate_limit_per_s=1.0, rate_limit_burst=3))
    codes = [client.get("/api/v1/coordination", headers=AUTH).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    limited = client.get("/api/v1/coordination", headers=AUTH)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    # Another token has its own bucket.
    assert (
        client.get("/api/v1/coordination", headers={"Authorization": f"Bearer {OTHER_TOKEN}"}).status_code
        == 200
    )


def test_api_prefix_serves_everything_under_it_and_health_at_root(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> None:
    client = start_client(make_settings(api_prefix="/api/immune"))
    assert client.get("/api/immune/api/v1/coordination", headers=AUTH).status_code == 200
    assert client.get("/api/v1/coordination", headers=AUTH).status_code == 404
    assert client.get("/api/immune/health/ready").status_code == 200
    assert client.get("/health/live").status_code == 200
    assert client.get("/api/immune/openapi.json").status_code == 200


def test_fault_injection_applies_to_api_v1_only(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> None:
    client = start_client(make_settings(fault_error_ratio=1.0))
    faulty = client.get("/api/v1/coordination", headers=AUTH)
    assert faulty.status_code == 500
    assert faulty.headers["x-immune-fault"] == "injected"
    assert faulty.headers["x-immune-color"] == "green"
    assert client.get("/health/live").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_openapi_documents_security_errors_and_event_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    ingest = spec["paths"]["/api/v1/events"]["post"]
    assert {"401", "403", "413", "422", "429", "503"} <= set(ingest["responses"])
    assert ingest["security"] == [{"HTTPBearer": []}]
    body_schema = ingest["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["oneOf"][0] == {"$ref": "#/components/schemas/Event"}
    for name in ("Event", "NetworkFlow", "EndpointEvent", "IntelItem", "ErrorBody", "StoredThreat"):
        assert name in spec["components"]["schemas"], name
    for path in (
        "/api/v1/threats",
        "/api/v1/agents",
        "/api/v1/lymphnodes",
        "/api/v1/homeostasis",
        "/api/v1/memory",
        "/api/v1/coordination",
        "/api/v1/stats",
    ):
        assert path in spec["paths"], path


def _threats(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/threats", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_port_scan_becomes_a_threat_with_filters_pagination_and_memory(client: TestClient) -> None:
    attacker = "198.51.100.66"
    events = port_scan(attacker)
    post_events(client, events, batch_size=50)
    page = wait_for(lambda: _threats(client, antigen=attacker)["items"], what="port scan threat")
    threat = page[0]
    assert threat["category"] == "port_scan"
    assert "neutrophil" in threat["cells"]
    assert threat["evidence"] and threat["evidence"][0]["reason"]
    assert client.get(f"/api/v1/threats/{threat['threat_id']}", headers=AUTH).json()["seq"] == threat["seq"]
    assert client.get("/api/v1/threats/00000000-0000-0000-0000-000000000000", headers=AUTH).status_code == 404
    assert _threats(client, antigen=attacker, category="brute_force")["items"] == []
    assert _threats(client, since="2999-01-01T00:00:00Z")["items"] == []

    # Another attacker, so there are two threats to paginate through.
    for start, chunk in enumerate(port_scan("198.51.100.77")[i : i + 50] for i in range(0, 120, 50)):
        assert client.post("/api/v1/events", json={"events": chunk}, headers=AUTH).status_code == 202, start
    wait_for(lambda: len(_threats(client, category="port_scan")["items"]) >= 2, what="second threat")
    first = _threats(client, category="port_scan", limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"] is not None
    second = _threats(client, category="port_scan", limit=1, cursor=first["next_cursor"])
    assert second["items"][0]["seq"] < first["items"][0]["seq"]

    node = wait_for(
        lambda: [
            n
            for n in client.get("/api/v1/lymphnodes", headers=AUTH).json()
            if n["node_id"] == "net:198.51.100.0/24"
        ],
        what="lymph node for the attackers' network",
    )[0]
    assert node["threat_count"] >= 1 and node["categories"].get("port_scan", 0) >= 1
    assert (
        client.get("/api/v1/lymphnodes/net:198.51.100.0/24", headers=AUTH).json()["node_id"]
        == node["node_id"]
    )
    assert client.get("/api/v1/lymphnodes/net:none", headers=AUTH).status_code == 404

    memory = client.get("/api/v1/memory", headers=AUTH).json()
    assert any(s["antigen"] == attacker and s["category"] == "port_scan" for s in memory["signatures"])


def test_agents_can_be_listed_created_cloned_and_deleted(client: TestClient) -> None:
    listing = client.get("/api/v1/agents", headers=AUTH).json()
    types = {t["type"] for t in listing["types"]}
    assert {"neutrophil", "macrophage"} <= types
    created = client.post(
        "/api/v1/agents", json={"type": "neutrophil", "params": {"port_scan_ports": 5}}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["params"]["port_scan_ports"] == 5
    clone = client.post(f"/api/v1/agents/{agent['id']}/clone", headers=AUTH)
    assert clone.status_code == 201
    assert clone.json()["params"] == agent["params"] and clone.json()["id"] != agent["id"]
    assert client.get(f"/api/v1/agents/{clone.json()['id']}", headers=AUTH).status_code == 200
    assert client.delete(f"/api/v1/agents/{agent['id']}", headers=AUTH).status_code == 204
    assert client.get(f"/api/v1/agents/{agent['id']}", headers=AUTH).status_code == 404
    assert client.delete(f"/api/v1/agents/{agent['id']}", headers=AUTH).status_code == 404
    bad = client.post("/api/v1/agents", json={"type": "neutrophil", "params": {"bogus": 1}}, headers=AUTH)
    assert bad.status_code == 422 and "bogus" in bad.json()["message"]
    assert client.post("/api/v1/agents", json={"type": "no-such-cell"}, headers=AUTH).status_code == 422


def test_homeostasis_override_is_applied_by_the_leader_and_alerted(client: TestClient) -> None:
    state = wait_for(
        lambda: client.get("/api/v1/homeostasis", headers=AUTH).json()["term"], what="first tick"
    )
    assert state >= 1
    assert (
        client.put(
            "/api/v1/homeostasis/override", json={"level": "critical", "duration_s": 60}, headers=AUTH
        ).status_code
        == 204
    )
    applied = wait_for(
        lambda: (s := client.get("/api/v1/homeostasis", headers=AUTH).json())["level"] == 3 and s,
        what="override applied",
    )
    assert applied["source"] == "override" and applied["level_name"] == "critical"
    wait_for(
        lambda: (client.get("/api/v1/homeostasis", headers=AUTH).json()["hormone"] or {}).get("level") == 3,
        what="hormone",
    )
    assert client.put("/api/v1/homeostasis/override", json={"level": 9}, headers=AUTH).status_code == 422
    assert client.delete("/api/v1/homeostasis/override", headers=AUTH).status_code == 204
    wait_for(
        lambda: client.get("/api/v1/homeostasis", headers=AUTH).json()["level"] == 0, what="back to baseline"
    )


def test_coordination_reports_this_single_replica_as_leader(client: TestClient) -> None:
    body = wait_for(
        lambda: (b := client.get("/api/v1/coordination", headers=AUTH).json())["is_leader"] and b,
        what="leadership",
    )
    assert body["leader"] == "test-a" and body["term"] >= 1


def test_websocket_streams_threats_with_filters_and_rejects_bad_tokens(client: TestClient) -> None:
    with client.websocket_connect("/ws/stream?types=alert", headers=AUTH) as other:
        assert other.receive_json()["filter"]["types"] == ["alert"]
    for url, headers in (
        ("/ws/stream", {}),
        ("/ws/stream", {"Authorization": "Bearer wrong"}),
        ("/ws/stream?token=wrong", {}),
        (f"/ws/stream?token={TOKEN}", {}),
        ("/ws/stream?types=bogus", AUTH),
    ):
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(url, headers=headers) as ws:
                ws.receive_json()  # refused with a reason after the handshake: the close arrives here
        assert refused.value.code == 1008, url
    with client.websocket_connect("/ws/stream?types=threat&category=port_scan", headers=AUTH) as ws:
        hello = ws.receive_json()
        assert hello["type"] == "subscribed" and hello["filter"]["category"] == ["port_scan"]
        events = port_scan("198.51.100.99")
        for start in range(0, len(events), 60):
            client.post("/api/v1/events", json={"events": events[start : start + 60]}, headers=AUTH)
        message = ws.receive_json()
        assert message["type"] == "threat"
        assert message["data"]["antigen"] == "198.51.100.99"
        assert message["data"]["category"] == "port_scan"


def test_stats_json_shape_is_stable(client: TestClient) -> None:
    stats = client.get("/api/v1/stats", headers=AUTH).json()
    for key in (
        "events_accepted",
        "events_stored",
        "events_processed",
        "threats",
        "outbox_pending",
        "dead_letters",
    ):
        assert isinstance(stats[key], int), key
    json.dumps(stats)
