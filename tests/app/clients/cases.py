"""One entry per external-service client: how a test builds it and makes its typed call.

``invoke`` returns the client's answer, or None when the client took its named fallback (clients whose
protocol raises on unavailability, Memory and Ethical AI, are mapped to None here)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from immune_core.adaptive.recall import RecallQuery
from immune_core.clients.adaptive_immunity import AdaptiveImmunityClient
from immune_core.clients.base import ClientConfig, DependencyFailure, ServiceClient
from immune_core.clients.ethical_ai import EthicalAIClient
from immune_core.clients.ip_intel import IPIntelClient
from immune_core.clients.memory import MemoryServiceClient
from immune_core.clients.metrics import ClientMetrics
from immune_core.clients.rte import RTEClient
from immune_core.clients.treg import TregClient
from immune_core.detection.threat import Evidence, Threat
from immune_core.responses.validation import ProposedAction, ValidatorUnavailable
from prometheus_client import CollectorRegistry

_addresses = itertools.count(1)


def a_threat(antigen: str = "198.51.100.66", confidence: float = 0.9) -> Threat:
    now = datetime.now(UTC)
    return Threat(
        threat_id=uuid4(),
        detected_at=now,
        category="port_scan",
        antigen_type="source_ip",
        antigen=antigen,
        severity="high",
        confidence=confidence,
        cells=["neutrophil"],
        evidence=[Evidence(cell="neutrophil-1", cell_type="neutrophil", reason="120 ports in 24 s", at=now)],
        event_ids=[uuid4()],
        signature=f"port_scan:source_ip:{antigen}",
    )


async def _rte(client: Any) -> Any:
    return await client.triage(a_threat())


async def _ip_intel(client: Any) -> Any:
    # A fresh address each call: a verdict with a ttl is cached and would hide the service.
    return await client.reputation(f"203.0.113.{next(_addresses) % 250 + 1}")


async def _treg(client: Any) -> Any:
    return await client.suppression(2, 10.0, {"low": 6, "high": 1})


async def _adaptive(client: Any) -> Any:
    return await client.affinities([0.1, 0.2, 0.3], [[0.1, 0.2, 0.3], [0.9, 0.9, 0.9]])


def an_action(kind: str = "isolate_host", target: str = "web-01") -> ProposedAction:
    threat = a_threat()
    return ProposedAction.propose(
        kind,  # type: ignore[arg-type]
        target,
        threat_id=threat.threat_id,
        signature=threat.signature,
        category=threat.category,
        antigen_type=threat.antigen_type,
        severity="critical",
        confidence=0.95,
        reason="confirmed port scan followed by brute force",
        proposed_by="cytotoxic_t-1",
        proposed_at=threat.detected_at,
        host_id="web-01",
    )


async def _ethical_ai(client: Any) -> Any:
    # Protocol: raises ValidatorUnavailable when it cannot decide (validate_action then applies the default).
    try:
        return await client.validate(an_action(target=f"web-{next(_addresses)}"))
    except ValidatorUnavailable:
        return None


async def _memory(client: Any) -> Any:
    # Protocol: raises when unavailable (recall then stays local).
    try:
        return await client.recall(
            RecallQuery(antigen_type="source_ip", space="source_ip", features=(0.1, 0.2, 0.3))
        )
    except DependencyFailure:
        return None


@dataclass(frozen=True)
class Case:
    service: str
    client_cls: type[ServiceClient]
    operation: str
    invoke: Callable[[Any], Awaitable[Any]]
    fallback: str

    def __str__(self) -> str:
        return self.service


CASES: list[Case] = [
    Case("rte", RTEClient, "triage", _rte, "keep_innate_verdict"),
    Case("ip_intel", IPIntelClient, "lookup", _ip_intel, "no_enrichment"),
    Case("treg", TregClient, "suppression", _treg, "no_suppression"),
    Case("adaptive_immunity", AdaptiveImmunityClient, "affinity", _adaptive, "internal_affinity"),
    Case("ethical_ai", EthicalAIClient, "validate", _ethical_ai, "safe_default"),
    Case("memory", MemoryServiceClient, "recall", _memory, "local_memory_only"),
]


def make_client(case: Case, url: str, **overrides: Any) -> tuple[ServiceClient, CollectorRegistry]:
    values: dict[str, Any] = {
        "base_url": url,
        "timeout_s": 1.0,
        "connect_timeout_s": 0.5,
        "retries": 2,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "breaker_threshold": 5,
        "breaker_reset_s": 30.0,
        "max_concurrency": 8,
        "bulkhead_wait_s": 0.05,
    }
    values.update(overrides)
    registry = CollectorRegistry()
    return case.client_cls(ClientConfig(**values), ClientMetrics(registry)), registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def failures(registry: CollectorRegistry, case: Case, reason: str) -> float:
    """How many of `case`'s calls failed for `reason` (immune_dependency_failures_total)."""
    return sample(registry, "immune_dependency_failures_total", dependency=case.service, reason=reason)


def calls(registry: CollectorRegistry, case: Case, outcome: str) -> float:
    """How many of `case`'s calls ended in `outcome` (immune_dependency_calls_total)."""
    return sample(
        registry,
        "immune_dependency_calls_total",
        dependency=case.service,
        operation=case.operation,
        outcome=outcome,
    )
