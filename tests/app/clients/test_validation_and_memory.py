"""Ethical AI behind the core's action gate (``responses.validation.validate_action``) and the Memory
service behind B-cell recall, against real local servers of their contracts; and the six services
built from the settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from immune_core.adaptive.recall import RecalledDetector, RecallQuery
from immune_core.clients.base import DependencyFailure
from immune_core.clients.services import ExternalServices
from immune_core.observability.metrics import Metrics
from immune_core.responses.validation import DEFAULT_POLICY_NAME, validate_action
from immune_core.settings import Settings

from tests.app.clients.cases import CASES, an_action, make_client, sample
from tests.app.clients.servers import EthicalAIBehaviour, MemoryBehaviour, ServiceServer, build

ETHICAL = next(c for c in CASES if c.service == "ethical_ai")
MEMORY = next(c for c in CASES if c.service == "memory")


@pytest.fixture
def ethical() -> Iterator[ServiceServer]:
    server = build("ethical_ai", EthicalAIBehaviour(protected_hosts={"db-01"}))
    yield server
    server.stop()


@pytest.fixture
def memory() -> Iterator[ServiceServer]:
    server = build("memory", MemoryBehaviour())
    yield server
    server.stop()


async def test_an_approved_action_is_allowed_with_the_services_reason(ethical: ServiceServer) -> None:
    client, _ = make_client(ETHICAL, ethical.url)
    try:
        verdict = await validate_action(client, an_action("isolate_host", "web-01"))  # type: ignore[arg-type]
        assert (verdict.decision, verdict.validator, verdict.degraded) == ("allow", "ethical-ai", False)
        assert verdict.reason == "proportionate"
        assert ethical.bad_requests == []
    finally:
        await client.aclose()


async def test_a_denied_action_is_denied_with_the_services_reason(ethical: ServiceServer) -> None:
    client, _ = make_client(ETHICAL, ethical.url)
    try:
        verdict = await validate_action(client, an_action("kill_process", "db-01/postgres"))  # type: ignore[arg-type]
        assert verdict.decision == "deny"
        assert verdict.reason == "db-01 is a protected host (policy protected-assets)"
    finally:
        await client.aclose()


async def test_a_retried_validation_records_one_decision(ethical: ServiceServer) -> None:
    ethical.script.extend(["error"])  # the first attempt fails, the retry (same Idempotency-Key) answers
    client, _ = make_client(ETHICAL, ethical.url, retries=2)
    try:
        action = an_action("isolate_host", "web-02")
        verdict = await validate_action(client, action)  # type: ignore[arg-type]
        assert verdict.decision == "allow"
        assert ethical.count("validate") == 2
        assert list(ethical.behaviour.decisions) == [str(action.action_id)]  # type: ignore[attr-defined]
        assert {r.headers["idempotency-key"] for r in ethical.requests} == {str(action.action_id)}
    finally:
        await client.aclose()


@pytest.mark.parametrize("failure", ["down", "malformed", "slow"])
async def test_without_an_answer_critical_actions_are_denied_by_the_safe_default(
    ethical: ServiceServer, failure: str
) -> None:
    if failure == "down":
        ethical.stop()
    else:
        ethical.mode, ethical.slow_s = failure, 3.0
    client, registry = make_client(ETHICAL, ethical.url, timeout_s=0.2, retries=1)
    try:
        verdict = await validate_action(client, an_action("isolate_host", "web-03"))  # type: ignore[arg-type]
        assert (verdict.decision, verdict.validator, verdict.degraded) == ("deny", DEFAULT_POLICY_NAME, True)
        assert "needs a validator's approval" in verdict.reason and "ValidatorUnavailable" in verdict.reason
        assert (
            sample(
                registry,
                "immune_dependency_fallbacks_total",
                dependency="ethical_ai",
                fallback="safe_default",
            )
            == 1
        )
        # A non-critical action (blocking an outside address) follows the default policy: allowed.
        outside = await validate_action(client, an_action("block_source", "8.8.8.8"))  # type: ignore[arg-type]
        assert (outside.decision, outside.degraded) == ("allow", True)
    finally:
        await client.aclose()


async def test_a_decision_about_another_action_is_a_contract_failure(ethical: ServiceServer) -> None:
    action = an_action("isolate_host", "web-04")
    ethical.behaviour.decisions[str(action.action_id)] = {  # type: ignore[attr-defined]
        "action_id": "someone-else",
        "decision": "approved",
        "reason": "not yours",
    }
    client, registry = make_client(ETHICAL, ethical.url)
    try:
        verdict = await validate_action(client, action)  # type: ignore[arg-type]
        assert (verdict.decision, verdict.degraded) == ("deny", True)
        assert (
            sample(registry, "immune_dependency_failures_total", dependency="ethical_ai", reason="contract")
            == 1
        )
    finally:
        await client.aclose()


# -- Memory service ----------------------------------------------------------------------------------
def _detector(
    detector_id: str, features: tuple[float, ...], antigen_type: str = "source_ip"
) -> RecalledDetector:
    return RecalledDetector.model_validate(
        {
            "detector_id": detector_id,
            "antigen_type": antigen_type,
            "space": "source_ip" if antigen_type == "source_ip" else "process",
            "category": "port_scan",
            "features": features,
            "radius": 0.2,
        }
    )


async def test_recall_returns_the_services_detectors_nearest_first(memory: ServiceServer) -> None:
    client, _ = make_client(MEMORY, memory.url)
    try:
        for detector in (
            _detector("far", (0.9, 0.9)),
            _detector("near", (0.1, 0.2)),
            _detector("host", (0.1, 0.2), "host"),
        ):
            assert await client.remember(detector)  # type: ignore[attr-defined]
        recalled = await client.recall(  # type: ignore[attr-defined]
            RecallQuery(antigen_type="source_ip", space="source_ip", features=(0.1, 0.25), limit=5)
        )
        assert [d.detector_id for d in recalled] == ["near", "far"]
        assert memory.bad_requests == []
    finally:
        await client.aclose()


async def test_storing_a_detector_is_never_retried(memory: ServiceServer) -> None:
    memory.mode = "error"
    client, registry = make_client(MEMORY, memory.url, retries=3)
    try:
        assert not await client.remember(_detector("d", (0.5,)))  # type: ignore[attr-defined]
        assert memory.count("remember") == 1
        assert (
            sample(registry, "immune_dependency_fallbacks_total", dependency="memory", fallback="not_shared")
            == 1
        )
    finally:
        await client.aclose()


async def test_recall_without_the_service_raises_for_the_hook_to_stay_local(memory: ServiceServer) -> None:
    memory.stop()
    client, registry = make_client(MEMORY, memory.url, retries=0)
    try:
        with pytest.raises(DependencyFailure):
            await client.recall(RecallQuery(antigen_type="source_ip", space="source_ip", features=(0.1,)))  # type: ignore[attr-defined]
        assert (
            sample(
                registry,
                "immune_dependency_fallbacks_total",
                dependency="memory",
                fallback="local_memory_only",
            )
            == 1
        )
    finally:
        await client.aclose()


# -- the six, from the settings -----------------------------------------------------------------------
async def test_the_six_services_are_built_from_the_settings_and_report_their_state() -> None:
    servers = {
        name: build(name) for name in ("rte", "ip_intel", "ethical_ai", "memory", "adaptive_immunity", "treg")
    }
    try:
        settings = Settings(
            rte_url=servers["rte"].url,
            ip_intel_url=servers["ip_intel"].url,
            ethical_ai_url=servers["ethical_ai"].url,
            memory_service_url=servers["memory"].url,
            adaptive_immunity_url=servers["adaptive_immunity"].url,
            treg_url=servers["treg"].url,
        )
        external = ExternalServices.from_settings(settings, Metrics().clients)
        assert set((await external.states()).values()) == {"unknown"}
        servers["treg"].stop()
        await external.probe_all()
        states = await external.states()
        assert states.pop("treg") == "degraded"
        assert set(states.values()) == {"up"}
        assert all(server.count("health") >= 1 for name, server in servers.items() if name != "treg")
        await external.aclose()
        nothing = ExternalServices.from_settings(Settings(), Metrics().clients)
        assert set((await nothing.states()).values()) == {"not_configured"} and nothing.configured() == []
    finally:
        for server in servers.values():
            server.stop()
