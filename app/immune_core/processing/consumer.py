"""The consumer group over the input topics: store, detect, commit — then acknowledge to Kafka.

* The Kafka offset is committed only after the batch (events and everything detection concluded from
  them) is durable: at-least-once delivery into the store.
* Detection of a batch is idempotent: events already marked processed are not detected again, and a
  verdict is computed once per event and held until its batch commits (``EngineHost.detect``), so a
  batch retried or re-read after a crash never counts an event twice in the cells' windows. The
  processed mark is written in the transaction that stores the verdict's threats and outbox rows.
* Isolation: nothing one message holds can stop its partition. Not a valid event, on the wrong topic,
  raising in detection, or refused by the database: the message goes to ``immunis.dlq`` (and the
  ``dead_letters`` table, raw bytes kept exactly) with a reason code, and the loop goes on.
* When the database is down the batch is held and retried with the same verdicts.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from immune_core.adaptive import maturation
from immune_core.adaptive.recall import MemoryRecall, as_memory_detector
from immune_core.detection.threat import Threat
from immune_core.events.models import (
    KIND_BY_TOPIC,
    TOPIC_BY_KIND,
    EventValidationError,
    parse_event,
)
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.processing import dlq
from immune_core.processing.commit import AnyEvent, CommitResult, ProcessedBatch, commit_batch
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.processing.foreground import Foreground
from immune_core.processing.health import ConsumerHealth
from immune_core.processing.retry import retry_while_store_down
from immune_core.responses.proposals import Decision, Proposal
from immune_core.responses.validation import ActionValidator, ValidationVerdict, validate_action
from immune_core.storage.database import Database
from immune_core.storage.errors import is_refused_value
from immune_core.storage.repository import processed_among
from immune_core.transport.bus import Bus, InboundMessage

log = get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
# Consults external services about threats (immune_core.clients.review); never raises.
Review = Callable[[Sequence[Threat]], Awaitable[list[Threat]]]
INPUT_TOPICS: tuple[str, ...] = tuple(TOPIC_BY_KIND.values())
# Detection is synchronous CPU work on the event loop that also serves the HTTP API. A batch (up to
# consumer_batch_size events) hands the loop back at least this often, so a request waits for one slice
# of detection at most instead of for whole batches (bench/adaptive_overhead.py measures it) ...
DETECTION_SLICE_S = 0.005
# ... and, between two slices, waits while requests are in flight (processing.foreground), this long at
# most by default (``Settings.detection_max_defer_ms``): under continuous requests detection still gets
# a slice in every five.
DETECTION_MAX_DEFER_S = 0.02


async def _already(verdict: ValidationVerdict) -> ValidationVerdict:
    return verdict  # decided in the engine (damped by a regulatory T cell): the validator is not asked


class DetectionConsumer:
    def __init__(
        self,
        *,
        database: Database,
        bus: Bus,
        engine: EngineHost,
        metrics: Metrics,
        counters: IntakeCounters,
        group_id: str,
        batch_size: int,
        health: ConsumerHealth | None = None,
        review: Review | None = None,
        validator: ActionValidator | None = None,
        memory_recall: MemoryRecall | None = None,
        affinity: maturation.AffinityScorer | None = None,
        live: Callable[[], Awaitable[bool]] | None = None,
        detection_slice_s: float = DETECTION_SLICE_S,
        foreground: Foreground | None = None,
        detection_max_defer_s: float = DETECTION_MAX_DEFER_S,
    ) -> None:
        if not 0 <= detection_max_defer_s <= 0.25:
            raise ValueError(f"detection_max_defer_s must be within [0, 0.25] s, got {detection_max_defer_s}")
        self._db = database
        self._detection_slice_s = detection_slice_s
        self._detection_max_defer_s = detection_max_defer_s
        self._foreground = foreground
        # Join the group only while this replica's colour is live (coordination/color.py); None: always.
        self._live = live
        self._bus = bus
        self._engine = engine
        self._metrics = metrics
        self._counters = counters
        self._group_id = group_id
        self._batch_size = batch_size
        self.health = health or ConsumerHealth(metrics)
        self._review = review
        # Puts each proposed response to the validator (Ethical AI), or the documented safe default.
        self._validator = validator
        # B-cell recall consults the platform's memory (the Memory service) after primary responses.
        self._memory_recall = memory_recall
        # Affinity maturation consults the platform's scorer (the Adaptive Immunity service) after primary
        # responses; without it (or when it fails) the internal choice stands (``internal_affinity``).
        self._affinity = affinity

    async def run(self) -> None:
        self.health.started()
        while True:
            while self._live is not None and not await self._live():
                self.health.progressed()  # an idle colour has nothing to read: that is not a stall
                await asyncio.sleep(1.0)
            await self._consume_while_live()

    async def _consume_while_live(self) -> None:
        """Member of the group until the colour goes idle; leaving (stop) hands the partitions over."""
        consumer = self._bus.consumer(INPUT_TOPICS, group_id=self._group_id)
        await consumer.start()
        try:
            while self._live is None or await self._live():
                messages = await consumer.poll(self._batch_size, timeout_s=1.0)
                lags = consumer.lag()
                for topic, lag in lags.items():
                    self._metrics.consumer_lag.labels(topic=topic).set(lag)
                self.health.observed_lag(sum(lags.values()), attached=bool(lags))
                if not messages:
                    if not any(lags.values()):
                        self.health.progressed()  # idle with nothing to read is progress
                    continue
                await self.handle(messages)
                await consumer.commit(messages)
                self.health.progressed()
        finally:
            await consumer.stop()

    async def handle(self, messages: list[InboundMessage]) -> CommitResult:
        batch = self._decode(messages)
        already_done = await self._already_processed(batch)
        # Partitions interleave arbitrarily; event-time order within the batch keeps the cells' windows
        # closer to what happened (the engine's clock is the latest timestamp it has seen).
        # The first slice of a batch gives way too: small batches (a quiet topic, the in-process bus)
        # never reach a slice boundary, yet their detection still competes with requests in flight.
        slice_started = -math.inf
        for event in sorted(batch.events, key=lambda e: e.timestamp):
            event_id = event.event_key
            if event_id in already_done or event_id in batch.detected:
                continue
            if time.perf_counter() - slice_started >= self._detection_slice_s:
                # Between two events the engines are consistent: what runs meanwhile (requests, the
                # cytokine feed, cluster sync) sees them exactly as between two batches.
                if self._foreground is None:
                    await asyncio.sleep(0)
                else:
                    await self._foreground.give_way(self._detection_max_defer_s)
                slice_started = time.perf_counter()
            verdict = self._engine.detect(event, batch.lanes[event_id])
            batch.detected[event_id] = verdict.threats
            batch.cytokines[event_id] = verdict.cytokines
            batch.expansions[event_id] = verdict.expansions
            batch.memory[event_id] = verdict.memory
            batch.forgotten[event_id] = verdict.forgotten
            batch.self_samples[event_id] = verdict.self_samples
            if verdict.error_type is not None:
                # Still marked processed (its verdict is "detection failed"): retrying would fail again.
                origin = batch.origins[event_id]
                batch.dead_letters.append(
                    self._letter(
                        origin,
                        dlq.DETECTION_ERROR,
                        f"{verdict.error_type}: {verdict.error}",
                        verdict.error_type,
                    )
                )
        await self._review_threats(batch)
        await self._decide_responses(batch)
        await self._recall(batch)
        await self._mature(batch)
        try:
            # Waits out a database outage (StoreUnavailable) with backoff, however long it lasts.
            result = await self._retry(commit_batch, self._db, batch, "kafka")
        except Exception as exc:
            if not is_refused_value(exc):
                raise  # a bug, not the input's fault: crash (restart, readiness) rather than dead-letter
            # The database refused the batch (a value it cannot store): find the culprit(s) one by one.
            log.warning("batch_refused_by_database", error_type=type(exc).__name__, events=len(batch.events))
            result = await self._commit_one_by_one(batch)
        self._engine.forget(batch.detected)
        self._account(batch, result)
        return result

    async def _review_threats(self, batch: ProcessedBatch) -> None:
        """External advice on the batch's new threats (all events at once: the calls overlap)."""
        if self._review is None:
            return
        pending = [
            event_id
            for event_id, threats in batch.detected.items()
            if threats and not self._engine.verdict_reviewed(event_id)
        ]
        if not pending:
            return
        reviewed = await asyncio.gather(
            *(self._review(batch.detected[event_id]) for event_id in pending), return_exceptions=True
        )
        for event_id, outcome in zip(pending, reviewed, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                # A bug in the review must not hold the partition: the threats go as the cells raised them.
                log.error("threat_review_failed", event_id=event_id, error_type=type(outcome).__name__)
                outcome = batch.detected[event_id]
            batch.detected[event_id] = outcome
            self._engine.mark_reviewed(event_id, outcome)

    async def _decide_responses(self, batch: ProcessedBatch) -> None:
        """Validate the batch's proposed responses (concurrently); decisions are held with the verdict."""
        pending: dict[str, list[Proposal]] = {}
        for event_id in batch.detected:
            held = self._engine.decisions_of(event_id)
            if held is not None:
                batch.decisions[event_id] = held
                continue
            proposals = self._engine.proposals_of(event_id)
            if proposals:
                pending[event_id] = proposals
        if not pending:
            return
        decided = await asyncio.gather(*(self._decide(proposals) for proposals in pending.values()))
        for event_id, decisions in zip(pending, decided, strict=True):
            batch.decisions[event_id] = decisions
            self._engine.mark_decided(event_id, decisions)
            for decision in decisions:
                outcome = "proposed" if decision.published else "denied"
                self._metrics.responses.labels(kind=decision.action.kind, outcome=outcome).inc()

    async def _recall(self, batch: ProcessedBatch) -> None:
        """Detectors the external memory knows near each primary response: stored with the batch and
        loaded into every engine. A failure leaves recall local (logged); the batch goes on."""
        for event_id in batch.detected:
            held = self._engine.recalled_of(event_id)
            if held is None and self._memory_recall is not None:
                queries = self._engine.recall_queries_of(event_id)
                if not queries:
                    continue
                held = []
                answers = await asyncio.gather(
                    *(self._memory_recall.recall(query) for query in queries), return_exceptions=True
                )
                now = datetime.now(UTC)
                for answer in answers:
                    if isinstance(answer, BaseException):
                        log.warning("memory_recall_failed", error_type=type(answer).__name__)
                        continue
                    for recalled in answer:
                        detector = as_memory_detector(recalled, self._memory_recall.name, now)
                        if detector is not None:
                            held.append(detector)
                self._engine.mark_recalled(event_id, held)
            if held:
                batch.memory.setdefault(event_id, []).extend(held)

    async def _mature(self, batch: ProcessedBatch) -> None:
        """Detectors of primary responses the external scorer ranks another candidate first for: moved
        to it (same id), stored with the batch and loaded into every engine. A failure keeps the internal
        choice (the client counts the fallback); the batch goes on."""
        for event_id in batch.detected:
            held = self._engine.matured_of(event_id)
            if held is None and self._affinity is not None:
                queries = self._engine.affinity_queries_of(event_id)
                if not queries:
                    continue
                answers = await asyncio.gather(
                    *(self._affinity.affinities(q.antigen, q.candidates) for q in queries),
                    return_exceptions=True,
                )
                kept = {d.detector_id: d for d in batch.memory.get(event_id, [])}
                now = datetime.now(UTC)
                held = []
                for query, answer in zip(queries, answers, strict=True):
                    if isinstance(answer, BaseException):
                        log.warning("affinity_scoring_failed", error_type=type(answer).__name__)
                        continue
                    index = maturation.choose(query, answer)
                    detector = kept.get(query.detector_id)
                    if index > 0 and detector is not None:
                        held.append(maturation.moved(detector, query.candidates[index], now))
                self._engine.mark_matured(event_id, held)
            if held:
                batch.memory.setdefault(event_id, []).extend(held)  # stored after (over) the first form

    async def _decide(self, proposals: list[Proposal]) -> list[Decision]:
        verdicts = await asyncio.gather(
            *(
                _already(p.verdict) if p.verdict is not None else validate_action(self._validator, p.action)
                for p in proposals
            )
        )
        return [Decision(p.action, verdict) for p, verdict in zip(proposals, verdicts, strict=True)]

    async def _commit_one_by_one(self, batch: ProcessedBatch) -> CommitResult:
        new_ids: list[str] = []
        claimed: set[str] = set()
        threats = []
        letters = list(batch.dead_letters)
        refused: list[AnyEvent] = []
        for event in batch.events:
            event_id = event.event_key
            part = batch.only(event)
            try:
                result = await self._retry(commit_batch, self._db, part, "kafka")
            except Exception as exc:
                if not is_refused_value(exc):
                    raise
                origin = batch.origins[event_id]
                refused.append(event)
                letters.append(
                    self._letter(
                        origin,
                        dlq.STORAGE_ERROR,
                        f"the database refused the event: {exc}",
                        type(exc).__name__,
                    )
                )
                continue
            new_ids += result.new_event_ids
            claimed |= result.claimed
            threats += result.threats
        # The dead letters on their own (their raw bytes are always storable).
        await self._retry(commit_batch, self._db, ProcessedBatch(dead_letters=letters), "kafka")
        batch.dead_letters = letters
        batch.events = [e for e in batch.events if e not in refused]  # not stored: neither new nor duplicate
        return CommitResult(new_ids, claimed, threats)

    def _decode(self, messages: list[InboundMessage]) -> ProcessedBatch:
        batch = ProcessedBatch()
        for message in messages:
            origin = dlq.DeadLetter(message.topic, message.partition, message.offset, "", "", message.value)
            try:
                event = parse_event(message.value)
            except EventValidationError as exc:
                batch.dead_letters.append(self._letter(origin, dlq.INVALID_EVENT, exc.message))
                continue
            except Exception as exc:  # a parser bug on hostile bytes is still only this message's problem
                batch.dead_letters.append(
                    self._letter(origin, dlq.INVALID_EVENT, f"unreadable: {exc}", type(exc).__name__)
                )
                continue
            expected = KIND_BY_TOPIC.get(message.topic)
            if expected is not None and event.kind != expected:
                reason = f"event kind {event.kind!r} does not belong on topic {message.topic!r}"
                batch.dead_letters.append(self._letter(origin, dlq.KIND_MISMATCH, reason))
                continue
            event_id = event.event_key
            if event_id in batch.origins:
                continue  # the same event twice in one batch: stored and detected once
            batch.origins[event_id] = origin
            batch.events.append(event)
            batch.lanes[event_id] = EngineHost.lane(message.topic, message.partition)
        return batch

    def _letter(
        self, origin: dlq.DeadLetter, code: str, detail: str, error_type: str | None = None
    ) -> dlq.DeadLetter:
        self._metrics.dlq.labels(reason=code).inc()
        log.warning(
            "poison_message",
            topic=origin.topic,
            partition=origin.partition,
            offset=origin.offset,
            reason=code,
            error_type=error_type,
        )
        return dlq.DeadLetter(
            origin.topic, origin.partition, origin.offset, code, detail, origin.raw, error_type
        )

    async def _already_processed(self, batch: ProcessedBatch) -> set[str]:
        """Events of ``batch`` processed before; an event the database cannot even look up (a value it
        refuses as a parameter) is dead-lettered and dropped from the batch instead of failing it."""
        ids = [e.event_key for e in batch.events]
        try:
            return await self._retry(self._processed_among, ids)
        except Exception as exc:
            if not is_refused_value(exc):
                raise
            log.warning("batch_lookup_refused_by_database", events=len(ids))
        done: set[str] = set()
        for event in list(batch.events):
            event_id = event.event_key
            try:
                done |= await self._retry(self._processed_among, [event_id])
            except Exception as exc:
                if not is_refused_value(exc):
                    raise
                batch.events.remove(event)
                origin = batch.origins.pop(event_id)
                detail = f"the database refused the event: {exc}"
                batch.dead_letters.append(self._letter(origin, dlq.STORAGE_ERROR, detail, type(exc).__name__))
        return done

    async def _processed_among(self, event_ids: list[str]) -> set[str]:
        async with self._db.session() as conn:
            return await processed_among(conn, event_ids)

    async def _retry(self, call: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        return await retry_while_store_down(call, *args, **kwargs)

    def _account(self, batch: ProcessedBatch, result: CommitResult) -> None:
        new = set(result.new_event_ids)
        # Counted per (kind, outcome), then one increment each: a labelled child's look-up per event
        # was ~2 % of a batch's CPU (docs/performance.md); the counters end at the same values.
        outcomes = Counter(
            (event.kind, "stored" if event.event_key in new else "duplicate") for event in batch.events
        )
        for (kind, outcome), count in outcomes.items():
            self._metrics.events.labels(kind=kind, outcome=outcome, source="kafka").inc(count)
        self._counters.accepted += len(new)
        self._counters.dead_lettered += len(batch.dead_letters)
        for threat in result.threats:
            self._metrics.threats.labels(severity=threat.severity).inc()
