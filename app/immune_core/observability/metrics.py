"""Prometheus metrics of one service process (one registry, so tests can build several apps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from immune_core.clients.metrics import ClientMetrics

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.http_latency = Histogram(
            "immune_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "immune_events_total",
            "Events seen, by kind and outcome",
            ["kind", "outcome", "source"],
            registry=r,
        )
        self.detections = Counter(
            "immune_detections_total", "Threats raised, by contributing cell", ["cell"], registry=r
        )
        self.detection_errors = Counter(
            "immune_detection_errors_total", "Events on which the detection engine raised", registry=r
        )
        self.self_samples_refused = Counter(
            "immune_self_samples_refused_total",
            "Stored self samples refused on load (not a self sample of this release), each counted once",
            registry=r,
        )
        self.threats = Counter(
            "immune_threats_total", "Threats stored, by severity", ["severity"], registry=r
        )
        self.dlq = Counter(
            "immune_dlq_messages_total", "Poison messages sent to the DLQ", ["reason"], registry=r
        )
        self.responses = Counter(
            "immune_response_actions_total",
            "Response actions the cytotoxic T cells proposed, by kind and outcome (proposed, denied)",
            ["kind", "outcome"],
            registry=r,
        )
        self.outbox_depth = Gauge("immune_outbox_depth", "Outbox rows not yet published", registry=r)
        self.outbox_published = Counter(
            "immune_outbox_published_total", "Outbox rows published", ["topic_family"], registry=r
        )
        self.consumer_lag = Gauge(
            "immune_consumer_lag", "Kafka consumer lag (messages)", ["topic"], registry=r
        )
        self.consumer_restarts = Counter(
            "immune_consumer_restarts_total",
            "Detection consumer restarts after an unexpected error (a crash loop shows here)",
            registry=r,
        )
        self.consumer_last_progress = Gauge(
            "immune_consumer_last_progress_timestamp_seconds",
            "Epoch seconds when the detection consumer last committed a batch or was idle with no lag",
            registry=r,
        )
        self.events_unprocessed = Gauge(
            "immune_events_unprocessed",
            "Stored events detection has not processed, older than the sweeper's grace period",
            registry=r,
        )
        self.events_reforwarded = Counter(
            "immune_events_reforwarded_total",
            "Stored-but-unprocessed events the sweeper sent to their input topic again",
            registry=r,
        )
        self.leader = Gauge("immune_leader", "1 when this instance holds the leader lease", registry=r)
        self.deployment_live = Gauge(
            "immune_deployment_live",
            "1 while this replica's colour is the live one (it consumes production input and may lead);"
            " 0 on the idle colour of a blue/green pair and before the first answer",
            registry=r,
        )
        self.fencing_token = Gauge("immune_fencing_token", "Fencing token of the lease held", registry=r)
        self.singleton_rejected = Counter(
            "immune_singleton_writes_rejected_total", "Singleton writes refused for a stale token", registry=r
        )
        self.threat_level = Gauge("immune_threat_level", "Current homeostatic threat level", registry=r)
        self.ws_clients = Gauge("immune_ws_clients", "Connected WebSocket subscribers", registry=r)
        self.ws_dropped = Counter(
            "immune_ws_clients_dropped_total", "Slow WebSocket subscribers disconnected", registry=r
        )
        self.cytokines = Counter(
            "immune_cytokines_total",
            "Cytokines consumed, by type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "immune_dependency_up", "1 when a dependency answers", ["dependency"], registry=r
        )
        # External services (immune_core.clients): calls, latency, failures, breaker state per dependency.
        self.clients = ClientMetrics(r)
        self.rate_limited = Counter("immune_rate_limited_total", "Requests refused with 429", registry=r)
        self.auth_failures = Counter(
            "immune_auth_failures_total",
            "Authentications refused: a token that is not configured, or a configured one lacking the role",
            ["reason"],
            registry=r,
        )
