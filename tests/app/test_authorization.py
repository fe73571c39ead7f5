"""Roles, failed-login throttling, population caps and the last-cell guard (issue 8, "Authorization").

Each finding of the issue is a bad case here (it passed before roles existed and must now be refused)
next to the good case that still works for a token holding the role. Embedded service, real ASGI app.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from immune_core.api.security import AuthFailureLimiter
from immune_core.api.tokens import TokenConfigError, TokenRegistry, hash_entry, parse_roles
from immune_core.settings import Settings
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from tests.app.support import TOKEN, flow, wait_for

INGEST = "ingest-only-token-0001"
READ = "read-only-token-000002"
OPERATOR = "operator-token-0000003"
ADMIN = "admin-token-0000000004"
BARE = "bare-token-00000000005"
HASHED = "hashed-token-000000006"  # configured only as its SHA-256
INNATE = ("neutrophil", "macrophage", "nk_cell", "dendritic")
ADAPTIVE = ("helper_t", "regulatory_t", "b_cell", "cytotoxic_t")  # started by default (adaptive_layer)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tokens() -> str:
    hashed = "sha256:" + hashlib.sha256(HASHED.encode()).hexdigest() + ":read+operate"
    return ",".join(
        [f"{INGEST}:ingest", f"{READ}:read", f"{OPERATOR}:read+operate", f"{ADMIN}:admin", BARE, hashed]
    )


@pytest.fixture
def service(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> TestClient:
    return start_client(make_settings(api_tokens=_tokens(), auth_failure_limit=5, auth_failure_window_s=600))


def _intel(indicator: str = "192.0.2.66") -> dict[str, Any]:
    event = flow()
    for key in ("host_id", "src_ip", "dst_ip", "dst_port", "protocol", "bytes_in", "bytes_out"):
        event.pop(key)
    event.update(
        kind="intel",
        indicator_type="ip",
        indicator=indicator,
        severity="high",
        source="test-feed",
        expires_at="2099-01-01T00:00:00Z",
    )
    return event


def _first_of(client: TestClient, cell_type: str) -> str:
    agents = client.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"]
    return next(a["id"] for a in agents if a["type"] == cell_type)


# -- roles -------------------------------------------------------------------------------------------
def test_an_ingest_token_can_ingest_but_not_read_delete_or_override(service: TestClient) -> None:
    assert service.post("/api/v1/events", json=flow(), headers=bearer(INGEST)).status_code == 202
    neutrophil = _first_of(service, "neutrophil")
    for method, path, body in (
        ("GET", "/api/v1/threats", None),
        ("DELETE", f"/api/v1/agents/{neutrophil}", None),
        ("POST", "/api/v1/agents", {"type": "neutrophil"}),
        ("POST", f"/api/v1/agents/{neutrophil}/clone", None),
        ("PUT", "/api/v1/homeostasis/override", {"level": "critical", "duration_s": 86_400}),
        ("DELETE", "/api/v1/homeostasis/override", None),
    ):
        answer = service.request(method, path, json=body, headers=bearer(INGEST))
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["error"] == "insufficient_role"
        assert (
            "needs the" in answer.json()["message"] and "this token has: ingest" in answer.json()["message"]
        )
    # Nothing changed: the default population, the four innate cells and the four adaptive ones.
    assert len(service.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"]) == 8
    assert 'immune_auth_failures_total{reason="missing_role"} 6.0' in service.get("/metrics").text


def test_a_bare_token_keeps_ingest_and_read_but_cannot_change_the_population(service: TestClient) -> None:
    assert service.post("/api/v1/events", json=flow(), headers=bearer(BARE)).status_code == 202
    assert service.get("/api/v1/threats", headers=bearer(BARE)).status_code == 200
    neutrophil = _first_of(service, "neutrophil")
    refused = service.delete(f"/api/v1/agents/{neutrophil}", headers=bearer(BARE))
    assert refused.status_code == 403 and "'operate'" in refused.json()["message"]
    pinned = service.put("/api/v1/homeostasis/override", json={"level": 3}, headers=bearer(BARE))
    assert pinned.status_code == 403


def test_a_read_token_reads_but_cannot_ingest(service: TestClient) -> None:
    assert service.get("/api/v1/agents", headers=bearer(READ)).status_code == 200
    assert service.get("/api/v1/stats", headers=bearer(READ)).status_code == 200
    assert service.get("/api/v1/homeostasis", headers=bearer(READ)).status_code == 200
    refused = service.post("/api/v1/events", json=flow(), headers=bearer(READ))
    assert refused.status_code == 403 and "'ingest'" in refused.json()["message"]


def test_an_operator_token_changes_the_population_and_overrides(service: TestClient) -> None:
    created = service.post("/api/v1/agents", json={"type": "neutrophil"}, headers=bearer(OPERATOR))
    assert created.status_code == 201, created.text
    clone = service.post(f"/api/v1/agents/{created.json()['id']}/clone", headers=bearer(OPERATOR))
    assert clone.status_code == 201
    assert service.delete(f"/api/v1/agents/{clone.json()['id']}", headers=bearer(OPERATOR)).status_code == 204
    override = service.put("/api/v1/homeostasis/override", json={"level": 1}, headers=bearer(OPERATOR))
    assert override.status_code == 204
    assert service.delete("/api/v1/homeostasis/override", headers=bearer(OPERATOR)).status_code == 204


def test_a_token_configured_only_as_its_sha256_is_accepted(service: TestClient) -> None:
    assert service.get("/api/v1/agents", headers=bearer(HASHED)).status_code == 200
    created = service.post("/api/v1/agents", json={"type": "macrophage"}, headers=bearer(HASHED))
    assert created.status_code == 201
    # Knowing the digest is not knowing the token.
    digest = hashlib.sha256(HASHED.encode()).hexdigest()
    assert service.get("/api/v1/agents", headers=bearer(digest)).status_code == 403


def test_intel_needs_the_operate_role(service: TestClient) -> None:
    for token in (INGEST, BARE):
        refused = service.post("/api/v1/events", json={"events": [flow(), _intel()]}, headers=bearer(token))
        assert refused.status_code == 403, refused.text
        assert "intel event needs the 'operate' role" in refused.json()["message"]
    stats = service.get("/api/v1/stats", headers=bearer(ADMIN)).json()
    assert stats["events_stored"] == 0, "a refused batch stores nothing"
    assert service.post("/api/v1/events", json=_intel(), headers=bearer(ADMIN)).status_code == 202


def test_the_stream_needs_the_read_role(service: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with service.websocket_connect("/ws/stream", headers=bearer(INGEST)) as ws:
            ws.receive_json()
    assert refused.value.code == 1008
    with service.websocket_connect("/ws/stream", headers=bearer(READ)) as ws:
        assert ws.receive_json()["type"] == "subscribed"


# -- configuration ----------------------------------------------------------------------------------
def test_token_configuration_errors_name_the_entry_not_the_secret(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ValidationError) as unknown:
        make_settings(api_tokens="first-token:read,secret-value-123:root")
    assert "entry 1" in str(unknown.value) and "root" in str(unknown.value)
    assert "secret-value-123" not in str(unknown.value)
    with pytest.raises(ValidationError):
        make_settings(api_tokens="sha256:abc:read")
    with pytest.raises(ValidationError):
        make_settings(api_token_default_roles="read+superuser")
    with pytest.raises(TokenConfigError):
        parse_roles("")


def test_roles_union_admin_implies_all_and_hash_entry_round_trips() -> None:
    registry = TokenRegistry.parse(
        ["a-token:read", "a-token:ingest", hash_entry("b-token:admin")], frozenset()
    )
    assert registry.roles_of("a-token") == frozenset({"read", "ingest"})
    assert registry.roles_of("b-token") == frozenset({"admin"})
    assert registry.roles_of("c-token") is None
    assert hash_entry("b-token:admin").startswith("sha256:") and "b-token" not in hash_entry("b-token:admin")
    assert hash_entry(hash_entry("b-token")) == hash_entry("b-token")


def test_settings_keep_plain_tokens_for_local_clients_without_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    monkeypatch.setenv("IMMUNE_API_TOKENS", f"tok-alpha-1:admin, tok-beta-2 ,sha256:{digest}:read")
    settings = Settings()
    assert settings.token_values() == ("tok-alpha-1", "tok-beta-2")
    assert settings.token_registry.roles_of("tok-beta-2") == frozenset({"ingest", "read"})


# -- failed logins ----------------------------------------------------------------------------------
def test_failed_logins_are_throttled_per_address_with_retry_after(service: TestClient) -> None:
    for attempt in range(5):
        wrong = service.get("/api/v1/threats", headers=bearer(f"guess-{attempt}"))
        assert wrong.status_code == 403, attempt
    blocked = service.get("/api/v1/threats", headers=bearer("guess-6"))
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "too_many_failed_logins"
    assert 1 <= int(blocked.headers["retry-after"]) <= 600
    # While blocked even a valid token is refused: the guesser cannot tell a hit from a miss.
    assert service.get("/api/v1/threats", headers=bearer(READ)).status_code == 429
    with pytest.raises(WebSocketDisconnect):
        with service.websocket_connect("/ws/stream", headers=bearer(READ)) as ws:
            ws.receive_json()
    # Sending no token at all guesses nothing: 401, and never counted.
    assert service.get("/api/v1/threats").status_code == 401
    assert 'immune_auth_failures_total{reason="unknown_token"} 5.0' in service.get("/metrics").text


def test_missing_tokens_are_not_counted_as_failures(service: TestClient) -> None:
    for _ in range(20):
        assert service.get("/api/v1/threats").status_code == 401
    assert service.get("/api/v1/threats", headers=bearer(READ)).status_code == 200


def test_the_failure_window_is_per_address() -> None:
    limiter = AuthFailureLimiter(limit=3, window_s=60)
    for _ in range(3):
        assert limiter.blocked_for("198.51.100.1") == 0
        limiter.record_failure("198.51.100.1")
    assert 0 < limiter.blocked_for("198.51.100.1") <= 60
    assert limiter.blocked_for("198.51.100.2") == 0


# -- caps ---------------------------------------------------------------------------------------------
def test_an_oversized_dendritic_cell_is_refused_with_each_bound(service: TestClient) -> None:
    body = {"type": "dendritic", "params": {"population_size": 1000, "max_antigens": 1_000_000_000}}
    refused = service.post("/api/v1/agents", json=body, headers=bearer(ADMIN))
    assert refused.status_code == 422, refused.text
    fields = {detail["field"] for detail in refused.json()["details"]}
    assert {"population_size", "max_antigens"} <= fields
    budget = {"type": "dendritic", "params": {"population_size": 100, "max_antigens": 400_000}}
    assert service.post("/api/v1/agents", json=budget, headers=bearer(ADMIN)).status_code == 422
    fine = {"type": "dendritic", "params": {"population_size": 20, "max_antigens": 50_000}}
    assert service.post("/api/v1/agents", json=fine, headers=bearer(ADMIN)).status_code == 201


def test_non_finite_parameters_are_refused(service: TestClient) -> None:
    body = '{"type": "nk_cell", "params": {"min_std": Infinity}}'
    refused = service.post(
        "/api/v1/agents", content=body, headers={**bearer(ADMIN), "Content-Type": "application/json"}
    )
    assert refused.status_code == 422


def test_the_population_is_capped_per_type_and_in_total(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient]
) -> None:
    # The default population is eight cells (one of each innate and adaptive type): room for two more.
    client = start_client(make_settings(api_tokens=f"{ADMIN}:admin", max_cells=10, max_cells_per_type=2))
    assert len(client.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"]) == 8
    neutrophil = _first_of(client, "neutrophil")
    assert client.post(f"/api/v1/agents/{neutrophil}/clone", headers=bearer(ADMIN)).status_code == 201
    third = client.post(f"/api/v1/agents/{neutrophil}/clone", headers=bearer(ADMIN))
    assert third.status_code == 409 and third.json()["error"] == "population_full"
    assert "max_cells_per_type" in third.json()["message"]
    assert (
        client.post("/api/v1/agents", json={"type": "neutrophil"}, headers=bearer(ADMIN)).status_code == 409
    )
    assert (
        client.post("/api/v1/agents", json={"type": "macrophage"}, headers=bearer(ADMIN)).status_code == 201
    )
    total = client.post("/api/v1/agents", json={"type": "nk_cell"}, headers=bearer(ADMIN))
    assert total.status_code == 409 and "max_cells" in total.json()["message"]
    assert len(client.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"]) == 10


def test_every_cell_parameter_has_documented_bounds_in_openapi(service: TestClient) -> None:
    schema = service.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/agents"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    alternatives = {alt["properties"]["type"]["const"]: alt for alt in body["oneOf"]}
    assert set(alternatives) == {
        "dendritic",
        "macrophage",
        "neutrophil",
        "nk_cell",
        "helper_t",
        "regulatory_t",
        "b_cell",
        "cytotoxic_t",
    }
    unbounded = []
    for cell_type, alternative in alternatives.items():
        params = alternative["properties"]["params"]
        assert params.get("additionalProperties") is False, cell_type
        for name, prop in params["properties"].items():
            kind = prop.get("type")
            if kind in ("integer", "number"):
                if "maximum" not in prop and "exclusiveMaximum" not in prop:
                    unbounded.append(f"{cell_type}.{name}")
            elif kind == "array":
                items = prop.get("items", {})
                if "maxItems" not in prop or "maximum" not in items:
                    unbounded.append(f"{cell_type}.{name}")
            elif kind == "object":
                values = prop.get("additionalProperties", {})
                if "maximum" not in values or "propertyNames" not in prop:
                    unbounded.append(f"{cell_type}.{name}")
            elif "enum" in prop:
                assert prop["enum"], f"{cell_type}.{name}: empty enumeration"  # bounded by its values
            else:
                assert kind == "boolean", f"{cell_type}.{name}: unexpected {kind}"
    assert unbounded == []


# -- the last cell of a kind --------------------------------------------------------------------------
def test_deleting_every_cell_is_refused_and_forcing_it_makes_the_service_unready(service: TestClient) -> None:
    agents = service.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"]
    assert len(agents) == 8  # the innate four and, by default, the adaptive four
    innate = [a for a in agents if a["type"] in INNATE]
    adaptive = [a for a in agents if a["type"] not in INNATE]
    assert sorted(a["type"] for a in innate) == sorted(INNATE)
    assert sorted(a["type"] for a in adaptive) == sorted(ADAPTIVE)
    for agent in innate:
        refused = service.delete(f"/api/v1/agents/{agent['id']}", headers=bearer(OPERATOR))
        assert refused.status_code == 409, agent
        assert refused.json()["error"] == "last_of_kind"
        assert "force" in refused.json()["message"]
    assert len(service.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"]) == 8
    assert service.get("/health/ready").json()["ready"] is True
    forced_by_operator = service.delete(
        f"/api/v1/agents/{innate[0]['id']}?force=true", headers=bearer(OPERATOR)
    )
    assert forced_by_operator.status_code == 403, "forcing is the admin's decision"

    # Detection does not depend on the adaptive cells (required_cell_types is the innate four): an
    # operator removes them without force, and the replica stays ready.
    for agent in adaptive:
        assert service.delete(f"/api/v1/agents/{agent['id']}", headers=bearer(OPERATOR)).status_code == 204
    assert len(service.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"]) == 4
    assert service.get("/health/ready").status_code == 200

    for agent in innate:
        assert (
            service.delete(f"/api/v1/agents/{agent['id']}?force=true", headers=bearer(ADMIN)).status_code
            == 204
        )
    assert service.get("/api/v1/agents", headers=bearer(ADMIN)).json()["agents"] == []
    ready = service.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert set(ready.json()["missing_cell_types"]) == {"dendritic", "macrophage", "neutrophil", "nk_cell"}
    assert "detection depends on each" in ready.json()["reasons"][0]

    for cell_type in ("dendritic", "macrophage", "neutrophil", "nk_cell"):
        created = service.post("/api/v1/agents", json={"type": cell_type}, headers=bearer(OPERATOR))
        assert created.status_code == 201
    wait_for(lambda: service.get("/health/ready").status_code == 200, what="ready again")


def test_a_second_cell_of_a_kind_can_be_removed_without_force(service: TestClient) -> None:
    neutrophil = _first_of(service, "neutrophil")
    twin = service.post(f"/api/v1/agents/{neutrophil}/clone", headers=bearer(OPERATOR)).json()
    assert twin["lineage"] == neutrophil
    assert service.delete(f"/api/v1/agents/{neutrophil}", headers=bearer(OPERATOR)).status_code == 204
    assert service.delete(f"/api/v1/agents/{twin['id']}", headers=bearer(OPERATOR)).status_code == 409
    assert service.get("/health/ready").status_code == 200


def test_the_last_cell_guard_holds_on_each_store(
    database_settings: Settings, start_client: Callable[[Settings], TestClient]
) -> None:
    """The guard is applied where every replica applies the agent_ops log, on SQLite and PostgreSQL."""
    client = start_client(database_settings)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    dendritic = next(
        a for a in client.get("/api/v1/agents", headers=admin).json()["agents"] if a["type"] == "dendritic"
    )
    refused = client.delete(f"/api/v1/agents/{dendritic['id']}", headers=admin)
    assert refused.status_code == 409 and refused.json()["error"] == "last_of_kind"
    assert client.delete(f"/api/v1/agents/{dendritic['id']}?force=true", headers=admin).status_code == 204
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["missing_cell_types"] == ["dendritic"]
    assert client.post("/api/v1/agents", json={"type": "dendritic"}, headers=admin).status_code == 201
    wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready again")
