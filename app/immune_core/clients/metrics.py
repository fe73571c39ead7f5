"""Prometheus metrics of the external-service clients, registered on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Triage and lookups are expected in tens of milliseconds; the top buckets catch timeouts (seconds).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Gauge values of immune_dependency_circuit_state (the alert rules compare against them).
CIRCUIT_VALUE: dict[str, int] = {"closed": 0, "half-opened": 1, "opened": 2}


class ClientMetrics:
    """Per dependency (``rte``, ``ip_intel``, ...): calls, latency, failures by reason, breaker state,
    fallbacks taken. One instance per registry; every client of a process shares it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "immune_dependency_calls_total",
            "Calls to an external service, by operation and outcome (ok | failed | rejected)",
            ["dependency", "operation", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "immune_dependency_call_duration_seconds",
            "Latency of one HTTP attempt to an external service (seconds), successful or not",
            ["dependency", "operation"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "immune_dependency_failures_total",
            "Failed attempts, by reason: timeout, connect, http_5xx, http_4xx, contract, circuit_open, "
            "bulkhead_full",
            ["dependency", "reason"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "immune_dependency_circuit_state",
            "Circuit breaker of an external service: 0 closed, 1 half-open, 2 open",
            ["dependency"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "immune_dependency_fallbacks_total",
            "Times the core went on without an external service's answer, by the fallback taken",
            ["dependency", "fallback"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "immune_dependency_in_flight",
            "Calls holding a slot of the dependency's bulkhead",
            ["dependency"],
            registry=registry,
        )
