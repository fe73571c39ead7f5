"""The SLO alerting rules, as data: the same groups feed the bundled Prometheus's rule file and the
PrometheusRule object for clusters that run the Prometheus Operator.

Metric names are the service's (immune_core.observability.metrics; tests/infra checks every name
used here exists there): the request latency histogram labelled by status, Kafka consumer lag,
transactional-outbox depth, a 0/1 leader gauge, and the detection consumer's progress (restarts, last
progress time, stored events left unprocessed, events dead-lettered by detection or the database).
"""

from __future__ import annotations

from typing import Any

from immune_infra.config import StackSettings

LATENCY_BUCKETS = "immune_http_request_duration_seconds_bucket"
# Every request is one observation of the latency histogram: its _count is the request counter.
REQUESTS_TOTAL = "immune_http_request_duration_seconds_count"
CONSUMER_LAG = "immune_consumer_lag"
OUTBOX_DEPTH = "immune_outbox_depth"
LEADER = "immune_leader"
CONSUMER_RESTARTS = "immune_consumer_restarts_total"
CONSUMER_LAST_PROGRESS = "immune_consumer_last_progress_timestamp_seconds"
EVENTS_UNPROCESSED = "immune_events_unprocessed"
DLQ_MESSAGES = "immune_dlq_messages_total"
AUTH_FAILURES = "immune_auth_failures_total"
# Wrong tokens per 10 minutes, all replicas: well above a client with a stale token retrying (the service
# itself throttles each address after IMMUNE_AUTH_FAILURE_LIMIT per minute), low enough to see guessing.
TOKEN_GUESSES_PER_10M = 100
# A consumer with a backlog that has committed nothing for this long is stuck (the service's own
# readiness says "stuck" after 120 s; the alert waits a little longer and then 5 minutes more).
CONSUMER_STALL_SECONDS = 300
# External services (immune_core.clients): optional, so a failing one is a ticket, not a page, except
# Ethical AI, without which every critical response action is denied (pending) by the safe default.
DEPENDENCY_CIRCUIT = "immune_dependency_circuit_state"  # 0 closed, 1 half-open, 2 open
DEPENDENCY_CALLS = "immune_dependency_calls_total"
DEPENDENCY_FAILING_RATIO = 0.5


def alert_rules(settings: StackSettings) -> dict[str, Any]:
    slo = settings.monitoring.slo
    scope = f'namespace="{settings.namespace}"'
    # Probes and scrapes are fast and frequent: counting them would hide a slow or failing API.
    api = f'{scope},route!~"/health/.*|/metrics"'
    p95 = f"histogram_quantile(0.95, sum by (le) (rate({LATENCY_BUCKETS}{{{api}}}[5m])))"
    errors = f'sum(rate({REQUESTS_TOTAL}{{{api},status=~"5.."}}[5m]))'
    requests = f"sum(rate({REQUESTS_TOTAL}{{{api}}}[5m]))"

    def rule(alert: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {
            "alert": alert,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity, "service": "immune-core", "environment": settings.environment},
            "annotations": {"summary": summary},
        }

    return {
        "groups": [
            {
                "name": "immune-core-slo",
                "rules": [
                    rule(
                        "ImmuneLatencyP95High",
                        f"{p95} > {slo.p95_latency_seconds}",
                        "5m",
                        "page",
                        f"p95 request latency above {slo.p95_latency_seconds}s for 5 minutes",
                    ),
                    rule(
                        "ImmuneErrorRatioHigh",
                        f"({errors} / clamp_min({requests}, 1e-9)) > {slo.error_ratio}",
                        "5m",
                        "page",
                        f"5xx ratio above {slo.error_ratio:.2%} for 5 minutes",
                    ),
                    rule(
                        "ImmuneConsumerLagHigh",
                        f"max({CONSUMER_LAG}{{{scope}}}) > {slo.consumer_lag_max}",
                        "10m",
                        "ticket",
                        f"Kafka consumer lag above {slo.consumer_lag_max} messages for 10 minutes",
                    ),
                    rule(
                        "ImmuneConsumerCrashLooping",
                        f"sum by (instance) (increase({CONSUMER_RESTARTS}{{{scope}}}[10m])) >= 3",
                        "1m",
                        "page",
                        "a detection consumer restarted 3 times or more in 10 minutes (crash loop)",
                    ),
                    rule(
                        "ImmuneConsumerStalled",
                        f"(sum by (instance) ({CONSUMER_LAG}{{{scope}}}) > 0) and on (instance)"
                        f" ((time() - max by (instance) ({CONSUMER_LAST_PROGRESS}{{{scope}}}))"
                        f" > {CONSUMER_STALL_SECONDS})",
                        "5m",
                        "page",
                        f"a detection consumer with a backlog committed nothing in {CONSUMER_STALL_SECONDS}s",
                    ),
                    rule(
                        "ImmuneEventsUnprocessed",
                        f"max({EVENTS_UNPROCESSED}{{{scope}}}) > 0",
                        "10m",
                        "page",
                        "stored events are still not processed by detection after their grace period",
                    ),
                    rule(
                        "ImmuneDetectionErrors",
                        f"sum(increase({DLQ_MESSAGES}{{{scope},"
                        'reason=~"detection_error|storage_error"}[15m])) > 0',
                        "0m",
                        "ticket",
                        "events were dead-lettered because detection raised or the database refused them",
                    ),
                    rule(
                        "ImmuneApiTokenGuessing",
                        f'sum(increase({AUTH_FAILURES}{{{scope},reason="unknown_token"}}[10m]))'
                        f" > {TOKEN_GUESSES_PER_10M}",
                        "0m",
                        "ticket",
                        f"more than {TOKEN_GUESSES_PER_10M} requests with a wrong API token in 10 minutes",
                    ),
                    rule(
                        "ImmuneOutboxBacklog",
                        f"max({OUTBOX_DEPTH}{{{scope}}}) > {slo.outbox_depth_max}",
                        "10m",
                        "ticket",
                        f"transactional outbox holds more than {slo.outbox_depth_max} unpublished events",
                    ),
                    rule(
                        "ImmuneNoLeader",
                        f"(sum({LEADER}{{{scope}}}) < 1) or absent({LEADER}{{{scope}}})",
                        "1m",
                        "page",
                        "no instance holds the coordination lease: singleton duties are not running",
                    ),
                    rule(
                        "ImmuneSplitBrain",
                        f"sum({LEADER}{{{scope}}}) > 1",
                        "1m",
                        "page",
                        "more than one instance believes it is the leader",
                    ),
                ],
            },
            {
                "name": "immune-core-dependencies",
                "rules": [
                    rule(
                        "ImmuneDependencyCircuitOpen",
                        # Ethical AI has its own page (below): one alert per cause.
                        f"max by (dependency) ({DEPENDENCY_CIRCUIT}"
                        f'{{{scope},dependency!="ethical_ai"}}) >= 2',
                        "5m",
                        "ticket",
                        "the circuit to an external service has been open for 5 minutes: the core runs on "
                        "that client's fallback",
                    ),
                    rule(
                        "ImmuneDependencyFailing",
                        f'sum by (dependency) (rate({DEPENDENCY_CALLS}{{{scope},outcome!="ok"}}[10m]))'
                        f" / clamp_min(sum by (dependency) (rate({DEPENDENCY_CALLS}{{{scope}}}[10m])), 1e-9)"
                        f" > {DEPENDENCY_FAILING_RATIO}",
                        "10m",
                        "ticket",
                        f"more than {DEPENDENCY_FAILING_RATIO:.0%} of the calls to an external service fail",
                    ),
                    rule(
                        "ImmuneActionValidationUnavailable",
                        f'max({DEPENDENCY_CIRCUIT}{{{scope},dependency="ethical_ai"}}) >= 2',
                        "5m",
                        "page",
                        "Ethical AI unreachable for 5 minutes: critical response actions are denied and "
                        "held as pending",
                    ),
                ],
            },
        ]
    }
