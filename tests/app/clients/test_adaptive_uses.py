"""Ethical AI and the Memory service used end to end through the service, on the adaptive layer's paths
(embedded app, real local servers of each contract): a cytotoxic T cell's proposal is put to Ethical AI
before anything is published; a B cell's primary response asks the Memory service for what the platform
remembers near the antigen. Good cases fail without the use; bad cases (service down) take the
documented default and lose nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from immune_core.settings import Settings

from tests.app.clients.servers import EthicalAIBehaviour, MemoryBehaviour
from tests.app.support import AUTH, port_scan, post_events, wait_for

INTERNAL_SCANNER = "10.0.9.66"  # blocking an internal address is a critical action


def _adaptive_client(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], **urls: str
) -> tuple[TestClient, Settings]:
    # A generous timeout: these are the uses' good cases, and the slow-service case is the clients' own
    # (tests/app/clients/test_failure_modes.py); on a loaded CI machine 1 s was missed by a healthy server.
    settings = make_settings(
        external_timeout_s=10.0, external_retries=0, external_probe_interval_s=0.0, **urls
    )
    client = start_client(settings)
    # The service starts the adaptive layer by default (IMMUNE_ADAPTIVE_LAYER): one cell of each type, so
    # one cytotoxic T proposal (one validation) and one B-cell recall per antigen.
    agents = client.get("/api/v1/agents", headers=AUTH).json()["agents"]
    for cell in ("helper_t", "cytotoxic_t", "b_cell"):
        assert [a["type"] for a in agents].count(cell) == 1, agents
    return client, settings


def _rows(settings: Settings, sql: str) -> list[dict[str, Any]]:
    with sqlite3.connect(settings.sqlite_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql)]


def _decisions(settings: Settings, target: str) -> list[dict[str, Any]]:
    return _rows(
        settings,
        "SELECT kind, target, critical, decision, reason, validator, degraded FROM response_actions"
        f" WHERE target = '{target}'",
    )


# -- Ethical AI ----------------------------------------------------------------------------------------
def test_a_critical_action_denied_by_ethical_ai_is_recorded_with_its_reason_and_not_published(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    ethical = servers("ethical_ai", EthicalAIBehaviour(blocked_never={INTERNAL_SCANNER}))
    client, settings = _adaptive_client(make_settings, start_client, ethical_ai_url=ethical.url)
    post_events(client, port_scan(INTERNAL_SCANNER))
    [decision] = wait_for(lambda: _decisions(settings, INTERNAL_SCANNER), what="the proposal's decision")
    assert (decision["kind"], decision["critical"], decision["decision"]) == ("block_source", 1, "deny")
    assert decision["validator"] == "ethical-ai" and decision["degraded"] == 0
    assert (
        decision["reason"] == f"blocking {INTERNAL_SCANNER} would cut a shared gateway (policy shared-infra)"
    )
    assert ethical.count("validate") == 1 and ethical.bad_requests == []


def test_an_action_ethical_ai_approves_is_allowed_by_it(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    ethical = servers("ethical_ai")
    client, settings = _adaptive_client(make_settings, start_client, ethical_ai_url=ethical.url)
    post_events(client, port_scan(INTERNAL_SCANNER))
    [decision] = wait_for(lambda: _decisions(settings, INTERNAL_SCANNER), what="the proposal's decision")
    assert (decision["decision"], decision["validator"], decision["reason"]) == (
        "allow",
        "ethical-ai",
        "proportionate",
    )


def test_with_ethical_ai_down_a_critical_action_is_denied_pending_a_validator(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    ethical = servers("ethical_ai")
    ethical.stop()
    client, settings = _adaptive_client(make_settings, start_client, ethical_ai_url=ethical.url)
    post_events(client, port_scan(INTERNAL_SCANNER))
    [decision] = wait_for(lambda: _decisions(settings, INTERNAL_SCANNER), what="the proposal's decision")
    assert (decision["decision"], decision["validator"], decision["degraded"]) == (
        "deny",
        "default-policy",
        1,
    )
    assert "needs a validator's approval" in decision["reason"]
    # The detection itself is untouched: the threat is stored.
    threats = client.get("/api/v1/threats", params={"antigen": INTERNAL_SCANNER}, headers=AUTH).json()
    assert threats["items"]


# -- Memory service ------------------------------------------------------------------------------------
def _recalled(settings: Settings) -> list[dict[str, Any]]:
    return _rows(
        settings,
        "SELECT detector_id, category, origin FROM memory_detectors"
        " WHERE detector_id LIKE 'memory-service:%'",
    )


def test_b_cell_recall_consults_the_memory_service_and_keeps_what_it_answers(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    memory = servers("memory", MemoryBehaviour(known_category="network_sweep"))
    client, settings = _adaptive_client(make_settings, start_client, memory_service_url=memory.url)
    post_events(client, port_scan("198.51.100.90"))
    wait_for(lambda: memory.count("recall") >= 1, what="the B cell's recall reaching the Memory service")
    asked = memory.requests[0].body
    assert (asked["antigen_type"], asked["space"]) == ("source_ip", "source_ip")
    assert memory.bad_requests == []
    [detector] = wait_for(lambda: _recalled(settings), what="the recalled detector stored")
    assert detector["category"] == "network_sweep"


def test_without_the_memory_service_recall_stays_local(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    memory = servers("memory", MemoryBehaviour(known_category="network_sweep"))
    memory.stop()
    client, settings = _adaptive_client(make_settings, start_client, memory_service_url=memory.url)
    post_events(client, port_scan("198.51.100.91"))
    wait_for(
        lambda: (
            "local_memory_only" in client.get("/metrics").text
            and 'fallback="local_memory_only"} 1' in client.get("/metrics").text
        ),
        what="the local_memory_only fallback",
    )
    threats = client.get("/api/v1/threats", params={"antigen": "198.51.100.91"}, headers=AUTH).json()
    assert threats["items"] and _recalled(settings) == []
