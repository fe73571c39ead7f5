"""The composition root: picks each backend once from the settings and runs the background work.

Nothing else in the service knows which backend it talks to. Start-up never blocks on a dependency:
the HTTP server (and ``/health/live``) comes up at once, and the database-dependent work (migrations,
rebuilding detection state, consumers, leader election) boots in the background; ``/health/ready``
reports false until it has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from immune_core.adaptive.maturation import AffinityScorer
from immune_core.adaptive.recall import MemoryRecall
from immune_core.adaptive.state import CLONING_EXPANDED_TOPIC
from immune_core.cells.cytokine import CYTOKINE_TYPES, cytokine_topic
from immune_core.clients.review import ThreatReview
from immune_core.clients.services import ExternalServices
from immune_core.coordination.color import ColorGate
from immune_core.coordination.leader import LeaderElector
from immune_core.coordination.lease import DatabaseLease
from immune_core.detection.engine import DetectionConfig, DetectionEngine
from immune_core.events.models import TOPIC_BY_KIND, configure_event_time
from immune_core.homeostasis.controller import THREAT_LEVEL_HORMONE, HomeostaticController
from immune_core.hormones.inprocess import InProcessHormones
from immune_core.hormones.redis import RedisHormones
from immune_core.hormones.signal import Hormones
from immune_core.ingestion.intake import EventIntake
from immune_core.lymphnodes.coordinator import LymphNodeCoordinator
from immune_core.lymphnodes.cytokines import CytokineTally, run_cytokine_feed
from immune_core.observability.gc_tuning import GcPauses, freeze_boot_heap
from immune_core.observability.logging import get_logger, redact_text
from immune_core.observability.metrics import Metrics
from immune_core.outbox.relay import OutboxRelay
from immune_core.processing import dlq
from immune_core.processing.commit import ProcessedBatch, commit_batch, commit_side_threats
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.processing.foreground import Foreground
from immune_core.processing.retry import retry_while_store_down
from immune_core.processing.sweeper import UnprocessedSweeper
from immune_core.responses.validation import RESPONSES_PROPOSED_TOPIC, ActionValidator
from immune_core.settings import Settings
from immune_core.simulator.quality import ADAPTIVE_CELLS
from immune_core.storage.database import Database, StoreUnavailable
from immune_core.storage.factory import open_database
from immune_core.storage.migrations import migrate
from immune_core.storage.repository import ALERTS_TOPIC, DLQ_TOPIC, THREATS_TOPIC
from immune_core.stream.feed import run_stream_feed
from immune_core.stream.hub import StreamHub
from immune_core.transport.bus import Bus, BusUnavailable
from immune_core.transport.inprocess import InProcessBus
from immune_core.transport.kafka import KafkaBus

# Bounds /health/ready's database ping; the pod's readiness probe timeout must exceed it (infra).
READINESS_DATABASE_TIMEOUT_S = 2.0
log = get_logger(__name__)

ALL_TOPICS: tuple[str, ...] = (
    *TOPIC_BY_KIND.values(),
    THREATS_TOPIC,
    ALERTS_TOPIC,
    DLQ_TOPIC,
    CLONING_EXPANDED_TOPIC,
    RESPONSES_PROPOSED_TOPIC,
    *(cytokine_topic(t) for t in CYTOKINE_TYPES),
)


def open_bus(settings: Settings) -> Bus:
    if settings.kafka_bootstrap_servers:
        return KafkaBus(
            settings.kafka_bootstrap_servers,
            client_id=f"immune-core-{settings.instance_id}",
            partitions=settings.kafka_topic_partitions,
        )
    return InProcessBus()


def open_hormones(settings: Settings) -> Hormones:
    if settings.redis_url is not None:
        return RedisHormones(settings.redis_url.get_secret_value())
    return InProcessHormones()


@dataclass
class DependencyStatus:
    redis: str = "ok"
    kafka: str = "ok"
    checked_at: float = 0.0


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    # Set by the process owner (``immune-core serve``): freeze the boot heap and tune the collector once
    # booted (observability.gc_tuning). Off for services built inside another program (tests).
    tune_gc: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.database: Database = open_database(s)
        self.bus: Bus = open_bus(s)
        self.hormones: Hormones = open_hormones(s)
        self.counters = IntakeCounters()
        configure_event_time(s.max_clock_skew_s)  # the timestamp bound parse_event applies on every path
        detection = DetectionConfig(
            max_clock_skew_s=s.max_clock_skew_s,
            allowed_lateness_s=s.allowed_lateness_s,
            max_cells=s.max_cells,
            max_cells_per_type=s.max_cells_per_type,
        )
        if s.adaptive_layer:
            # Validated again: the caps must hold the eight cells (a refused setting fails start-up clearly).
            cells = [spec.model_dump() for spec in ADAPTIVE_CELLS]
            detection = DetectionConfig.model_validate({**detection.model_dump(), "cells": cells})
        self.engine = EngineHost(
            self.database,
            self.metrics,
            partition_of=self.bus.partition_for,
            template=DetectionEngine(detection),
        )
        self.relay = OutboxRelay(
            self.database,
            self.bus,
            self.metrics,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
        )
        self.intake = EventIntake(
            self.database, self.metrics, self.counters, on_stored=self.relay.wake, instance_id=s.instance_id
        )
        # Optional platform services (docs/service.md, "External services"): None when not configured.
        self.external = ExternalServices.from_settings(s, self.metrics.clients)
        # Proposed responses are validated by Ethical AI when it is configured (an ActionValidator), else
        # by the documented safe default (immune_core.responses.validation).
        self.validator: ActionValidator | None = getattr(self.external, "ethical_ai", None)
        # B-cell recall consults the Memory service when it is configured (a MemoryRecall), else local.
        self.memory_recall: MemoryRecall | None = getattr(self.external, "memory", None)
        # Affinity maturation consults the Adaptive Immunity service when it is configured (an
        # AffinityScorer), else the internal choice stands (adaptive.maturation).
        self.affinity: AffinityScorer | None = getattr(self.external, "adaptive_immunity", None)
        self.review = ThreatReview(
            rte=self.external.rte, ip_intel=self.external.ip_intel, feed_intel=self.intake.accept
        )
        self.hub = StreamHub(self.metrics, s.ws_queue_size)
        # A paused holder's lock goes at half the TTL: a successor still takes over when the lease expires.
        self.lease = DatabaseLease(self.database, hold_limit_s=s.lease_ttl_s / 2)
        self.tally = CytokineTally(self.metrics)
        # Only the live colour consumes input and leads (blue/green: coordination/color.py).
        self.color_gate = ColorGate(
            self.database,
            s.deployment_color,
            s.active_color_refresh_s,
            observe=lambda live: self.metrics.deployment_live.set(1 if live else 0),
        )
        self.elector = LeaderElector(
            self.lease,
            instance_id=s.instance_id,
            ttl_s=s.lease_ttl_s,
            renew_interval_s=s.lease_renew_interval_s,
            metrics=self.metrics,
            live=self.color_gate.is_live,
        )
        self.elector.add_duties(
            [
                HomeostaticController(
                    database=self.database,
                    lease=self.lease,
                    hormones=self.hormones,
                    metrics=self.metrics,
                    holder=self.elector.holder,
                    interval_s=s.homeostasis_interval_s,
                    window_s=s.homeostasis_window_s,
                    half_life_s=s.homeostasis_half_life_s,
                    treg=self.external.treg,
                    max_suppression=s.treg_max_suppression,
                ),
                LymphNodeCoordinator(
                    database=self.database,
                    lease=self.lease,
                    tally=self.tally,
                    holder=self.elector.holder,
                    interval_s=s.lymphnode_interval_s,
                    window_s=s.homeostasis_window_s,
                ),
            ]
        )
        # HTTP requests in flight (api.middleware.ForegroundRequests): detection gives way to them.
        self.foreground = Foreground()
        self.consumer = DetectionConsumer(
            database=self.database,
            bus=self.bus,
            engine=self.engine,
            metrics=self.metrics,
            counters=self.counters,
            group_id=s.kafka_group_id,
            batch_size=s.consumer_batch_size,
            review=self.review.review if self.review.active else None,
            validator=self.validator,
            memory_recall=self.memory_recall,
            affinity=self.affinity,
            live=self.color_gate.is_live,
            foreground=self.foreground,
            detection_max_defer_s=s.detection_max_defer_ms / 1000.0,
        )
        self.sweeper = UnprocessedSweeper(self.database, self.metrics, self.relay.wake)
        self.booted = asyncio.Event()
        self.gc_pauses = GcPauses(self.metrics.registry)
        self.dependencies = DependencyStatus()
        self.hormone_state: dict[str, Any] | None = None
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        log.info(
            "service_starting",
            instance_id=self.settings.instance_id,
            version=self.settings.version,
            color=self.settings.deployment_color,
            database=self.database.dialect,
            bus=type(self.bus).__name__,
            hormones=type(self.hormones).__name__,
            api_prefix=self.settings.api_prefix,
        )
        if not self.settings.api_tokens:
            log.warning("no_api_tokens_configured", effect="every authenticated route answers 401")
        self.gc_pauses.install()
        self.hormones.listen(self._on_hormone)
        await self.hormones.start()
        await self.bus.start()
        self._spawn("boot", self._boot)
        self._spawn("dependency-monitor", self._monitor_dependencies)
        if self.external.configured() and self.settings.external_probe_interval_s > 0:
            self._spawn("external-probe", self._probe_external)

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.wait_for(self.elector.stop(), timeout=10)
        await self.intake.stop()
        for task in reversed(self._tasks):
            task.cancel()
        if self._tasks:
            # Bounded: a library call that swallows cancellation must not keep the process alive.
            _, stuck = await asyncio.wait(self._tasks, timeout=10)
            for task in stuck:
                log.warning("background_task_did_not_stop", task=task.get_name())
        self._tasks.clear()
        await self.bus.stop()
        await self.hormones.stop()
        await self.external.aclose()
        await self.database.close()
        self.gc_pauses.uninstall()
        log.info("service_stopped", instance_id=self.settings.instance_id)

    def _spawn(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            # Background loops restart after an unexpected error instead of dying silently.
            while not self._stopping:
                try:
                    await body()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background_task_failed", task=name)
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def _boot(self) -> None:
        applied = await retry_while_store_down(self._connect_and_migrate)
        if applied:
            log.info("migrations_applied", versions=applied)
        replayed = await retry_while_store_down(
            self.engine.warm_up, self.settings.replay_window_s, self.settings.replay_max_events
        )
        await retry_while_store_down(self._dead_letter_replay_failures)
        self.metrics.outbox_depth.set(await retry_while_store_down(self.relay.depth))
        self._spawn("outbox-relay", self.relay.run)
        self._spawn("cluster-sync", self._sync_with_cluster)
        await self.elector.start()
        # Ready: events are accepted and stored from here on, even while Kafka is still unreachable.
        self.booted.set()
        log.info("service_ready", replayed_events=replayed)
        if self.tune_gc and self.settings.gc_gen0_threshold > 0:
            frozen = freeze_boot_heap(self.settings.gc_gen0_threshold)
            log.info("gc_boot_heap_frozen", objects=frozen, gen0_threshold=self.settings.gc_gen0_threshold)
        # Consumers subscribe only once their topics exist with the configured partitions; a consumer
        # that joins its group before a topic exists is not assigned it until the next metadata refresh.
        await self._ensure_topics()
        self._spawn("detection-consumer", self.consumer.run)
        self._spawn("unprocessed-sweeper", self.sweeper.run)
        self._spawn("stream-feed", lambda: run_stream_feed(self.bus, self.hub))
        self._spawn(
            "cytokine-feed",
            lambda: run_cytokine_feed(
                self.bus, self.tally, on_read=self.engine.receive_cytokines, dead_letter=self._dead_letter
            ),
        )

    async def _dead_letter(self, letter: dlq.DeadLetter) -> None:
        await retry_while_store_down(
            commit_batch, self.database, ProcessedBatch(dead_letters=[letter]), "kafka"
        )
        self.metrics.dlq.labels(reason=letter.reason_code).inc()

    async def _dead_letter_replay_failures(self) -> None:
        """Stored events the start-up replay could not detect on: each gets its DLQ record."""
        failures = self.engine.replay_failures
        if not failures:
            return
        letters = [
            dlq.DeadLetter(
                {str(k): v for k, v in TOPIC_BY_KIND.items()}.get(f.kind, f.kind),
                None,
                None,
                dlq.DETECTION_ERROR,
                f"replay at start-up, event {f.event_id}: {f.error_type}: {f.error}",
                f.payload.encode("utf-8", "surrogatepass"),
                f.error_type,
            )
            for f in failures
        ]
        await commit_batch(self.database, ProcessedBatch(dead_letters=letters), "replay")
        for _ in letters:
            self.metrics.dlq.labels(reason=dlq.DETECTION_ERROR).inc()
        self.engine.replay_failures = []

    async def _connect_and_migrate(self) -> list[int]:
        await self.database.connect()
        return await migrate(self.database)

    async def _ensure_topics(self) -> None:
        if not isinstance(self.bus, KafkaBus):
            return
        while not self._stopping:
            try:
                await self.bus.ensure_topics(ALL_TOPICS)
                return
            except BusUnavailable as exc:
                log.warning("kafka_topics_pending", error=str(exc))
                await asyncio.sleep(2.0)

    async def _sync_with_cluster(self) -> None:
        """Cell population and intel made known through other replicas; outbox depth gauge."""
        while not self._stopping:
            await asyncio.sleep(1.0)
            try:
                await self.engine.sync_agents()
                await self._sync_intel()
                await self.engine.sync_memory()
                await self.engine.sync_self()
                self.metrics.outbox_depth.set(await self.relay.depth())
            except StoreUnavailable:
                continue

    async def _sync_intel(self) -> None:
        for event_id, threats in await self.engine.sync_intel():
            for threat in await commit_side_threats(self.database, threats, event_id):
                self.metrics.threats.labels(severity=threat.severity).inc()

    async def _on_hormone(self, name: str, value: dict[str, Any]) -> None:
        if name == THREAT_LEVEL_HORMONE:
            self.hormone_state = value
            level = value.get("level")
            if isinstance(level, int):
                self.metrics.threat_level.set(level)
                # The homeostatic loop: the level sets the adaptive cells' sensitivity and damping.
                self.engine.set_threat_level(level)

    # -- health ------------------------------------------------------------------------------------
    async def _monitor_dependencies(self) -> None:
        # Checks the flag too: a client library that swallows a cancellation must not keep this alive.
        while not self._stopping:
            redis_ok = await self.hormones.healthy()
            kafka_ok = await self.bus.healthy()
            self.dependencies = DependencyStatus(
                redis="ok" if redis_ok else "down", kafka="ok" if kafka_ok else "down", checked_at=time.time()
            )
            self.metrics.dependency_up.labels(dependency="redis").set(int(redis_ok))
            self.metrics.dependency_up.labels(dependency="kafka").set(int(kafka_ok))
            await asyncio.sleep(2.0)

    async def _probe_external(self) -> None:
        # Through each client's breaker: a service that is down opens its circuit here too, so the
        # detection path fails fast on it instead of waiting out its timeouts.
        while not self._stopping:
            await self.external.probe_all()
            await asyncio.sleep(self.settings.external_probe_interval_s)

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        try:
            database_ok = await asyncio.wait_for(self.database.ping(), timeout=READINESS_DATABASE_TIMEOUT_S)
        except TimeoutError:
            database_ok = False
        self.metrics.dependency_up.labels(dependency="database").set(int(database_ok))
        consumer = self.consumer.health.state(bus_up=self.dependencies.kafka == "ok")
        dependencies = {
            "database": "ok" if database_ok else "down",
            "redis": self.dependencies.redis,
            "kafka": self.dependencies.kafka,
            "consumer": consumer,
        }
        # Redis and Kafka outages degrade the service but events are still accepted and stored. A
        # detection consumer that crash-loops or sits on a backlog is not: accepted events would never
        # be processed, so the replica is not ready (and the consumer alerts fire).
        consumer_ok = consumer in ("ok", "starting")
        return database_ok and self.booted.is_set() and consumer_ok, dependencies

    def describe_backends(self) -> dict[str, str]:
        return {
            "database": self.database.dialect,
            "bus": type(self.bus).__name__,
            "hormones": type(self.hormones).__name__,
            "database_url": redact_text(
                self.settings.database_url.get_secret_value() if self.settings.database_url else "sqlite"
            ),
        }
