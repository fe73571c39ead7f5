"""The external services used end to end through the service (embedded app, real local servers of
each contract): RTE triages neutrophil/NK threats, IP intelligence enriches source-address threats and
feeds the core's intel, the homeostatic controller takes Treg's suppression. Each use has a good case
that fails without it and a bad case (the service down) in which the core takes the client's fallback
and loses nothing: events are accepted and stored, threats are raised as the cells raised them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from immune_core.detection.threat import SEVERITY_RANK
from immune_core.homeostasis.levels import SEVERITY_WEIGHT
from immune_core.settings import Settings
from immune_core.simulator import generate

from tests.app.clients.servers import IPIntelBehaviour, RTEBehaviour, TregBehaviour
from tests.app.support import AUTH, flow, port_scan, post_events, wait_for

ATTACKER = "198.51.100.66"


def _settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    # No background probes, so only the use itself calls the service. The bad cases here are a stopped
    # server (refused at once), so a generous timeout costs nothing and keeps a loaded machine's healthy
    # server from looking slow; timeouts are the clients' own tests (test_failure_modes.py).
    values: dict[str, Any] = {
        "external_timeout_s": 10.0,
        "external_retries": 1,
        "external_backoff_initial_s": 0.01,
        "external_probe_interval_s": 0.0,
    }
    values.update(overrides)
    return make_settings(**values)


def _threat(client: TestClient, category: str, antigen: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        page = client.get("/api/v1/threats", params={"category": category, "antigen": antigen}, headers=AUTH)
        items = page.json()["items"]
        return items[0] if items else None

    found: dict[str, Any] = wait_for(find, what=f"a {category} threat about {antigen}")
    return found


def _metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- RTE ---------------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings of the store: SQLite, or a fresh schema of the shared PostgreSQL (set up before, and so
    torn down after, the service that uses it)."""
    return {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("pg_schema_url")}


def test_rte_escalates_a_neutrophil_port_scan(
    store: dict[str, str],
    make_settings: Callable[..., Settings],
    start_client: Callable[[Settings], TestClient],
    servers: Any,
) -> None:
    rte = servers("rte", RTEBehaviour(escalate_to="critical"))
    # On PostgreSQL too: the reviewed threat is what is stored.
    client = start_client(_settings(make_settings, rte_url=rte.url, **store))
    post_events(client, port_scan(ATTACKER))
    threat = _threat(client, "port_scan", ATTACKER)
    assert threat["severity"] == "critical"  # the neutrophil alone says medium or high
    assert [(a["service"], a["verdict"]) for a in threat["advice"]] == [("rte", "escalate")]
    assert "reflex rule" in threat["advice"][0]["detail"]
    assert rte.count("triage") >= 1 and rte.bad_requests == []
    assert client.get("/health/ready").json()["services"]["rte"] == "up"


def test_rte_dismissal_lowers_the_threat_but_keeps_it(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    rte = servers("rte", RTEBehaviour(allowed={ATTACKER}))
    client = start_client(_settings(make_settings, rte_url=rte.url))
    post_events(client, port_scan(ATTACKER))
    threat = _threat(client, "port_scan", ATTACKER)
    assert threat["severity"] == "low"
    assert threat["advice"][0]["verdict"] == "dismiss"


def test_without_rte_the_cells_verdict_stands_and_nothing_is_lost(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    rte = servers("rte")
    rte.stop()  # configured, but down
    client = start_client(_settings(make_settings, rte_url=rte.url))
    events = port_scan(ATTACKER)
    post_events(client, events)
    threat = _threat(client, "port_scan", ATTACKER)
    assert threat["severity"] in ("medium", "high")
    assert threat["advice"] == []
    assert (
        _metric(client, 'immune_dependency_fallbacks_total{dependency="rte",fallback="keep_innate_verdict"}')
        >= 1
    )
    ready = client.get("/health/ready")
    assert ready.status_code == 200  # an optional dependency never makes the core unready
    assert ready.json()["services"]["rte"] in ("degraded", "open_circuit")
    assert ready.json()["services"]["treg"] == "not_configured"


# -- IP intelligence ---------------------------------------------------------------------------------
def test_ip_intelligence_enriches_the_threat_and_feeds_the_intel(
    store: dict[str, str],
    make_settings: Callable[..., Settings],
    start_client: Callable[[Settings], TestClient],
    servers: Any,
) -> None:
    intel = servers("ip_intel", IPIntelBehaviour(malicious={ATTACKER: ["scanner", "botnet"]}, ttl_s=3600))
    client = start_client(_settings(make_settings, ip_intel_url=intel.url, **store))
    post_events(client, port_scan(ATTACKER))
    threat = _threat(client, "port_scan", ATTACKER)
    assert [(a["service"], a["verdict"]) for a in threat["advice"]] == [("ip_intel", "malicious")]
    assert "scanner, botnet" in threat["advice"][0]["detail"]
    assert threat["confidence"] >= 0.97  # noisy-OR with the service's score

    # Fed to the core's intel: every macrophage now knows the address ...
    def live() -> list[dict[str, Any]]:
        return [
            i
            for i in client.get("/api/v1/memory", headers=AUTH).json()["live_intel"]
            if i["indicator"] == ATTACKER
        ]

    fed = wait_for(live, what="the fed intel item")
    assert fed[0]["source"] == "ip-intel:test-intel"
    # ... so one ordinary connection from it, later, is a known-bad indicator.
    post_events(client, [flow(src_ip=ATTACKER, dst_port=443)])
    known = _threat(client, "known_bad_indicator", ATTACKER)
    assert "ip-intel" in str(known["evidence"])


def test_without_ip_intelligence_the_threat_is_stored_unenriched(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    intel = servers("ip_intel")
    intel.mode = "malformed"  # up, but answering outside its contract
    # A generous timeout: the malformed answer is prompt, but under CPU load it can take longer than the
    # 1 s the other bad cases use, and would then count as a timeout, not as the contract failure checked.
    client = start_client(_settings(make_settings, ip_intel_url=intel.url, external_timeout_s=30.0))
    post_events(client, port_scan(ATTACKER))
    threat = _threat(client, "port_scan", ATTACKER)
    assert threat["advice"] == []
    # Polled with a generous deadline rather than read once, so a busy machine cannot turn this into a race.
    wait_for(
        lambda: (
            _metric(client, 'immune_dependency_failures_total{dependency="ip_intel",reason="contract"}') >= 1
        ),
        what="the contract failure counted",
    )
    wait_for(
        lambda: (
            _metric(
                client, 'immune_dependency_fallbacks_total{dependency="ip_intel",fallback="no_enrichment"}'
            )
            >= 1
        ),
        what="the no_enrichment fallback counted",
    )
    assert _metric(client, 'immune_dependency_failures_total{dependency="ip_intel",reason="timeout"}') == 0
    memory = client.get("/api/v1/memory", headers=AUTH).json()
    assert all(i["indicator"] != ATTACKER for i in memory["live_intel"])


# -- Treg --------------------------------------------------------------------------------------------
def _raw_score(client: TestClient) -> float:
    threats = client.get("/api/v1/threats", params={"limit": 500}, headers=AUTH).json()["items"]
    return sum(SEVERITY_WEIGHT[SEVERITY_RANK[t["severity"]]] * t["confidence"] for t in threats)


def _score(client: TestClient) -> float:
    return float(client.get("/api/v1/homeostasis", headers=AUTH).json()["score"])


def test_the_homeostatic_controller_applies_treg_suppression_within_its_cap(
    store: dict[str, str],
    make_settings: Callable[..., Settings],
    start_client: Callable[[Settings], TestClient],
    servers: Any,
) -> None:
    treg = servers("treg", TregBehaviour(suppression=0.9, always=True))
    # A half-life far beyond the test, so the score is the plain sum of the stored threats' weights.
    client = start_client(
        _settings(
            make_settings, treg_url=treg.url, homeostasis_half_life_s=1e9, treg_max_suppression=0.5, **store
        )
    )
    post_events(client, port_scan(ATTACKER))
    _threat(client, "port_scan", ATTACKER)

    def halved() -> bool:
        raw = _raw_score(client)
        return raw > 0 and abs(_score(client) - 0.5 * raw) < 1e-3 * raw  # 0.9 asked, capped at 0.5

    wait_for(halved, what="the score damped by Treg's suppression, capped")
    assert treg.count("suppression") >= 1 and treg.bad_requests == []


def test_without_treg_the_score_is_not_suppressed(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    treg = servers("treg", TregBehaviour(suppression=0.9, always=True))
    treg.mode = "error"
    client = start_client(_settings(make_settings, treg_url=treg.url, homeostasis_half_life_s=1e9))
    post_events(client, port_scan(ATTACKER))
    _threat(client, "port_scan", ATTACKER)

    def undamped() -> bool:
        raw = _raw_score(client)
        return raw > 0 and abs(_score(client) - raw) < 1e-3 * raw

    wait_for(undamped, what="the score as computed")
    wait_for(
        lambda: _metric(
            client, 'immune_dependency_fallbacks_total{dependency="treg",fallback="no_suppression"}'
        ),
        what="the no_suppression fallback",
    )


def test_rte_triages_nk_decisions_too_and_only_neutrophil_or_nk_ones(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    rte = servers("rte")
    client = start_client(_settings(make_settings, rte_url=rte.url))
    begin = datetime.now(UTC) - timedelta(minutes=31)
    events = [labelled.event for labelled in generate("exfiltration", start=begin)]
    post_events(client, events)

    def nk_threat() -> dict[str, Any] | None:
        page = client.get("/api/v1/threats", params={"category": "exfiltration"}, headers=AUTH).json()
        return next((t for t in page["items"] if "nk_cell" in t["cells"]), None)

    threat = wait_for(nk_threat, what="the NK cell's exfiltration threat")
    assert [a["service"] for a in threat["advice"]] == ["rte"]
    assert threat["advice"][0]["verdict"] == "confirm"  # RTE's reflex rules leave exfiltration as found
    # A threat no neutrophil or NK cell contributed to (intel matched by a macrophage) is not triaged.
    intel = {
        "event_id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
        "kind": "intel",
        "indicator_type": "ip",
        "indicator": "192.0.2.250",
        "severity": "high",
        "source": "test-feed",
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    post_events(client, [intel])
    wait_for(
        lambda: any(
            i["indicator"] == "192.0.2.250"
            for i in client.get("/api/v1/memory", headers=AUTH).json()["live_intel"]
        ),
        what="the intel item learned",
    )
    post_events(client, [flow(src_ip="192.0.2.250")])
    known = _threat(client, "known_bad_indicator", "192.0.2.250")
    assert not {"neutrophil", "nk_cell"} & set(known["cells"])
    assert known["advice"] == []


# -- readiness through the background probes -----------------------------------------------------------
def test_probes_open_a_dead_services_circuit_and_close_it_when_it_returns_while_the_core_stays_ready(
    make_settings: Callable[..., Settings], start_client: Callable[[Settings], TestClient], servers: Any
) -> None:
    treg = servers("treg")
    treg.stop()
    client = start_client(
        _settings(
            make_settings,
            treg_url=treg.url,
            external_probe_interval_s=0.1,
            external_retries=0,
            external_breaker_threshold=2,
            external_breaker_reset_s=0.5,
        )
    )

    def treg_state() -> str:
        ready = client.get("/health/ready")
        assert ready.status_code == 200  # an optional dependency never makes the core unready
        return str(ready.json()["services"]["treg"])

    wait_for(lambda: treg_state() == "open_circuit", what="the dead service's circuit open")
    assert _metric(client, 'immune_dependency_circuit_state{dependency="treg"}') == 2
    treg.start()  # back, on the same port
    wait_for(lambda: treg_state() == "up", what="a half-open probe closing the circuit")
    assert _metric(client, 'immune_dependency_circuit_state{dependency="treg"}') == 0
    assert treg.count("health") >= 1
