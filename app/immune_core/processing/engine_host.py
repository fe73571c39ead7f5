"""The replica's detection engines, kept in step with the cluster.

* One engine per input lane (topic partition). Events of one antigen share a partition (``partition_key``),
  so each engine sees its antigens' events in order, and its event-time clock is that lane's: a lane
  that is behind (a consumer catching up, a burst replayed, another topic read ahead) never makes
  another lane's events "late".
* Cell population: API changes are an ordered log (``agent_ops``) that every replica applies in the same
  order to a template engine and to every partition engine, so cell ids agree everywhere. New
  partition engines start as copies of the template (same cells, same live intel, no traffic state).
* Intel: every engine must know every indicator, but the consumer group gives each replica only some
  partitions; intel from any replica is picked up from the store (``sync_intel``) and fed to all engines.
* State after a restart: rebuilt by replaying stored events (live intel, then the recent window) into the
  engine of the partition each would be consumed from, with the resulting threats discarded.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from immune_core.adaptive import queries as adaptive_queries
from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.adaptive.maturation import AffinityQuery
from immune_core.adaptive.recall import RecallQuery
from immune_core.adaptive.state import ClonalExpansion, SelfSample
from immune_core.cells.base import CellConfigError
from immune_core.cells.cytokine import Cytokine
from immune_core.detection.engine import DetectionEngine
from immune_core.detection.threat import Threat
from immune_core.events.models import (
    TOPIC_BY_KIND,
    EndpointEvent,
    IntelItem,
    NetworkFlow,
    parse_event,
    partition_key,
)
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.responses.proposals import Decision, Proposal
from immune_core.storage.database import Connection, Database

log = get_logger(__name__)
AnyEvent = NetworkFlow | EndpointEvent | IntelItem
PartitionOf = Callable[[str], int]
_SEEN_INTEL_LIMIT = 200_000
# Verdicts held until their batch commits; a batch is at most consumer_batch_size events, so this is
# only reached if commits keep failing for a very long time (the oldest verdicts are recomputed then).
_UNCOMMITTED_LIMIT = 100_000


@dataclass(frozen=True)
class Detection:
    """What detection concluded from one event: threats, cytokines released, or the error it raised."""

    threats: list[Threat]
    cytokines: list[Cytokine]
    error_type: str | None = None
    error: str | None = None
    reviewed: bool = False  # external services (RTE, IP intelligence) consulted about the threats
    # The adaptive layer: response proposals (decided once, then held), clonal expansions to publish,
    # memory detectors to store, ids of detectors tolerance deleted.
    proposals: list[Proposal] = field(default_factory=list)
    decisions: list[Decision] | None = None
    expansions: list[ClonalExpansion] = field(default_factory=list)
    memory: list[MemoryDetector] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    self_samples: list[SelfSample] = field(default_factory=list)  # learned in a training window
    recall_queries: list[RecallQuery] = field(default_factory=list)
    recalled: list[MemoryDetector] | None = None  # what the external memory answered (asked once)
    affinity_queries: list[AffinityQuery] = field(default_factory=list)
    matured: list[MemoryDetector] | None = None  # detectors the external scorer moved (asked once)


@dataclass(frozen=True)
class ReplayFailure:
    """A stored event the start-up replay could not run through detection."""

    event_id: str
    kind: str
    payload: str
    error_type: str
    error: str


@dataclass(frozen=True)
class AgentOp:
    seq: int
    op: str  # create | delete | clone
    cell_type: str | None
    params: dict[str, Any] | None
    target_cell_id: str | None


class EngineHost:
    def __init__(
        self,
        database: Database,
        metrics: Metrics,
        *,
        partition_of: PartitionOf = lambda _key: 0,
        template: DetectionEngine | None = None,
    ) -> None:
        self._db = database
        self._metrics = metrics
        self._partition_of = partition_of
        # The template never sees traffic: it holds the cell population and intel new engines start from.
        self.template = template or DetectionEngine()
        self.engines: dict[str, DetectionEngine] = {}
        self.applied_agent_seq = 0
        # Which cell each applied op produced, so the API can answer with the cell it created.
        self.cell_by_op: dict[int, str] = {}
        self.op_errors: dict[int, str] = {}
        self._seen_intel: OrderedDict[str, None] = OrderedDict()
        self._uncommitted: OrderedDict[str, Detection] = OrderedDict()
        self.replay_failures: list[ReplayFailure] = []
        self._intel_watermark = 0.0
        self._memory_watermark = 0.0
        self._self_watermark = 0.0
        # Stored self samples refused on load: the reasons (the latest 100) and the rows already refused
        # (the sync re-reads its last seconds every time: a bad row is logged and counted once).
        self.self_refused: list[str] = []
        self._refused_rows: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- detection ---------------------------------------------------------------------------------
    @staticmethod
    def lane(topic: str, partition: int) -> str:
        return f"{topic}/{partition}"

    def engine_for(self, lane: str) -> DetectionEngine:
        engine = self.engines.get(lane)
        if engine is None:
            engine = copy.deepcopy(self.template)
            self.engines[lane] = engine
        return engine

    def detect(self, event: AnyEvent, lane: str) -> Detection:
        """Detection's verdict on one event of the consumer group, computed once per event.

        The verdict is kept until ``forget`` (the batch holding it committed): a batch retried after a
        failure to commit, or re-read after the consumer restarted, gets the same verdict instead of
        running the event through the cells again (which would count it twice in their windows).
        Never raises: an exception while detecting is the verdict (``error_type``), and the caller
        dead-letters the event rather than stalling its partition.
        """
        event_id = event.event_key
        known = self._uncommitted.get(event_id)
        if known is not None:
            return known
        if isinstance(event, IntelItem):
            item = event
            verdict = self._guarded(event, lambda: (self.learn_intel(item), []))
        else:
            engine = self.engine_for(lane)
            flow_or_endpoint = event
            verdict = self._guarded(
                event, lambda: (engine.process(flow_or_endpoint), engine.drain_cytokines())
            )
            if verdict.error_type is None:
                expansions, memory, forgotten = engine.drain_adaptive()
                verdict = replace(
                    verdict,
                    proposals=engine.drain_proposals(),
                    recall_queries=engine.drain_recall_queries(),
                    affinity_queries=engine.drain_affinity_queries(),
                    expansions=expansions,
                    memory=memory,
                    forgotten=forgotten,
                    self_samples=engine.drain_self(),
                )
            for threat in verdict.threats:
                for cell in threat.cells:
                    self._metrics.detections.labels(cell=cell).inc()
        self._uncommitted[event_id] = verdict
        if len(self._uncommitted) > _UNCOMMITTED_LIMIT:
            self._uncommitted.popitem(last=False)
        return verdict

    def verdict_reviewed(self, event_id: str) -> bool:
        known = self._uncommitted.get(event_id)
        return known is not None and known.reviewed

    def mark_reviewed(self, event_id: str, threats: list[Threat]) -> None:
        """Hold the reviewed ``threats`` as ``event_id``'s verdict: a batch retried after a failed commit
        stores the same reviewed threats without asking the external services again."""
        known = self._uncommitted.get(event_id)
        if known is not None:
            self._uncommitted[event_id] = replace(known, threats=threats, reviewed=True)

    def proposals_of(self, event_id: str) -> list[Proposal]:
        known = self._uncommitted.get(event_id)
        return [] if known is None else known.proposals

    def recall_queries_of(self, event_id: str) -> list[RecallQuery]:
        known = self._uncommitted.get(event_id)
        return [] if known is None else known.recall_queries

    def recalled_of(self, event_id: str) -> list[MemoryDetector] | None:
        known = self._uncommitted.get(event_id)
        return None if known is None else known.recalled

    def mark_recalled(self, event_id: str, detectors: list[MemoryDetector]) -> None:
        """Hold what the external memory answered, and load it into every engine (once)."""
        known = self._uncommitted.get(event_id)
        if known is not None:
            self._uncommitted[event_id] = replace(known, recalled=detectors)
        for engine in (self.template, *self.engines.values()):
            engine.load_memory([copy.deepcopy(d) for d in detectors])

    def affinity_queries_of(self, event_id: str) -> list[AffinityQuery]:
        known = self._uncommitted.get(event_id)
        return [] if known is None else known.affinity_queries

    def matured_of(self, event_id: str) -> list[MemoryDetector] | None:
        known = self._uncommitted.get(event_id)
        return None if known is None else known.matured

    def mark_matured(self, event_id: str, detectors: list[MemoryDetector]) -> None:
        """Hold the detectors the external scorer moved, and load them into every engine (once; same ids:
        they replace the detectors as first kept)."""
        known = self._uncommitted.get(event_id)
        if known is not None:
            self._uncommitted[event_id] = replace(known, matured=detectors)
        for engine in (self.template, *self.engines.values()):
            engine.load_memory([copy.deepcopy(d) for d in detectors])

    def decisions_of(self, event_id: str) -> list[Decision] | None:
        known = self._uncommitted.get(event_id)
        return None if known is None else known.decisions

    def mark_decided(self, event_id: str, decisions: list[Decision]) -> None:
        """Hold the validator's verdicts as part of ``event_id``'s verdict: a batch retried after a failed
        commit records and publishes the same decisions without asking the validator again."""
        known = self._uncommitted.get(event_id)
        if known is not None:
            self._uncommitted[event_id] = replace(known, decisions=decisions)

    # -- the adaptive layer ------------------------------------------------------------------------
    def set_threat_level(self, level: int) -> None:
        """The homeostatic level (threat-level hormone) for every engine: sensitivity and damping."""
        for engine in (self.template, *self.engines.values()):
            engine.set_threat_level(level)

    def receive_cytokines(self, cytokines: list[Cytokine]) -> int:
        """Cytokines read from the topics, for every lane's engine; returns how many were new and live."""
        return sum(engine.receive_cytokines(cytokines) for engine in self.engines.values())

    async def sync_memory(self) -> int:
        """Load memory detectors stored since the last sync (by any replica) into every engine.

        Deleted detectors (tolerance) are removed everywhere. Returns the rows applied.
        """
        since = max(0.0, self._memory_watermark - 5.0)  # a transaction that started earlier commits later
        async with self._db.session() as conn:
            rows = await adaptive_queries.detectors_since(conn, since)
        engines = (self.template, *self.engines.values())
        applied = 0
        for row in rows:
            self._memory_watermark = max(self._memory_watermark, float(row["stored_at"]))
            if bool(row["deleted"]):
                for engine in engines:
                    engine.forget_memory([str(row["detector_id"])])
                applied += 1
                continue
            detector = adaptive_queries.detector_from_row(row)
            if detector is None:
                log.warning("memory_detector_unusable", detector_id=str(row["detector_id"]))
                continue
            for engine in engines:
                engine.load_memory([copy.deepcopy(detector)])
            applied += 1
        return applied

    async def sync_self(self) -> int:
        """Load self samples stored since the last sync (any lane, any replica) into every engine.

        This is how tolerance survives a restart: the regulatory T cells' self set and the start of
        their training window come back before the first event. A row that is not a self sample
        (``adaptive_queries.SelfSampleRefused``) is refused -- logged with the reason, counted in
        ``self_refused`` -- and the rest still load. Returns the samples loaded.
        """
        since = max(0.0, self._self_watermark - 5.0)  # a transaction that started earlier commits later
        async with self._db.session() as conn:
            rows = await adaptive_queries.self_samples_since(conn, since)
        samples: list[SelfSample] = []
        for row in rows:
            self._self_watermark = max(self._self_watermark, float(row["stored_at"]))
            try:
                samples.append(adaptive_queries.self_sample_from_row(row))
            except adaptive_queries.SelfSampleRefused as exc:
                key = (str(row["space"])[:200], str(row["vector"])[:2000])
                if key in self._refused_rows:
                    continue
                self._refused_rows[key] = None
                if len(self._refused_rows) > 10_000:
                    self._refused_rows.popitem(last=False)
                log.warning("self_sample_refused", reason=str(exc))
                self._metrics.self_samples_refused.inc()
                self.self_refused.append(str(exc))
                del self.self_refused[:-100]
        for engine in (self.template, *self.engines.values()):
            engine.load_self(samples)
        return len(samples)

    def forget(self, event_ids: Iterable[str]) -> None:
        """The verdicts on ``event_ids`` are durable (or another replica's won): stop holding them."""
        for event_id in event_ids:
            self._uncommitted.pop(event_id, None)

    @property
    def uncommitted(self) -> int:
        """Verdicts computed but not yet known to be durable."""
        return len(self._uncommitted)

    def process(self, event: AnyEvent, lane: str, *, replay: bool = False) -> list[Threat]:
        """Run a flow or endpoint event through its lane's engine (intel goes to ``learn_intel``).

        Raises whatever the engine raises; ``detect`` is the guarded path of the consumer group.
        """
        threats = self.engine_for(lane).process(event)
        if not replay:
            for threat in threats:
                for cell in threat.cells:
                    self._metrics.detections.labels(cell=cell).inc()
        return threats

    def _guarded(self, event: AnyEvent, run: Callable[[], tuple[list[Threat], list[Cytokine]]]) -> Detection:
        try:
            threats, cytokines = run()
        except Exception as exc:
            # A detection bug on one event must not stall the partition behind it (the consumer would
            # retry the same batch forever): the event is dead-lettered with the exception type.
            self._metrics.detection_errors.inc()
            log.exception("detection_failed", event_id=event.event_key, kind=event.kind)
            return Detection([], [], error_type=type(exc).__name__, error=str(exc))
        return Detection(threats, cytokines)

    def learn_intel(self, item: IntelItem) -> list[Threat]:
        """Give an intel item to every engine once.

        Straight into each engine's intel store, judged against that engine's own clock: running it
        through ``process`` would move every lane's event-time clock to the intel item's timestamp (intel
        is a separate topic, often read ahead of the traffic), making the lanes' events "late". Intel
        items raise no threats by themselves (macrophages match traffic against the store), so the
        returned list is empty; it is kept for callers that store whatever detection returns.
        """
        key = str(item.event_id)
        if key in self._seen_intel:
            return []
        self._seen_intel[key] = None
        if len(self._seen_intel) > _SEEN_INTEL_LIMIT:
            self._seen_intel.popitem(last=False)
        for engine in (self.template, *self.engines.values()):
            engine.intel.add(item, engine.clock)
        return []

    def _discard_replay_outputs(self, lane: str) -> None:
        # A replay rebuilds state; its cytokines, proposals and expansions were published the first
        # time round. Only the lane's engine ran the event: draining every engine per replayed event
        # was an eighth of a start-up's replay time.
        engine = self.engine_for(lane)
        engine.drain_cytokines()
        engine.drain_proposals()
        engine.drain_adaptive()
        engine.drain_self()
        engine.drain_recall_queries()
        engine.drain_affinity_queries()

    def drain_cytokines(self) -> list[Cytokine]:
        self.template.drain_cytokines()  # intel-only engine: nothing of interest, keep it bounded
        drained: list[Cytokine] = []
        for engine in self.engines.values():
            drained.extend(engine.drain_cytokines())
        return drained

    def known_intel(self) -> list[IntelItem]:
        # The template sees no traffic, so its clock never moves: judge expiry by the wall clock.
        return self.template.intel.live(datetime.now(UTC))

    def describe(self) -> list[dict[str, Any]]:
        """The population (same ids everywhere) with counters summed over this replica's engines."""
        cells = self.template.describe()
        for cell in cells:
            totals: dict[str, int] = {}
            for engine in self.engines.values():
                try:
                    counters = engine.get_cell(cell["id"]).describe()["counters"]
                except KeyError:
                    continue
                for name, value in counters.items():
                    totals[name] = totals.get(name, 0) + int(value)
            cell["counters"] = dict(sorted(totals.items()))
            cell["lanes"] = sorted(self.engines)
        return cells

    def has_cell(self, cell_id: str) -> bool:
        try:
            self.template.get_cell(cell_id)
        except KeyError:
            return False
        return True

    # -- cell population ---------------------------------------------------------------------------
    async def sync_agents(self) -> None:
        async with self._db.session() as conn:
            rows = await conn.fetch(
                "SELECT seq, op, cell_type, params, target_cell_id FROM agent_ops"
                " WHERE seq > $1 ORDER BY seq",
                self.applied_agent_seq,
            )
        for row in rows:
            self._apply(
                AgentOp(
                    seq=int(row["seq"]),
                    op=str(row["op"]),
                    cell_type=row["cell_type"],
                    params=json.loads(row["params"]) if row["params"] else None,
                    target_cell_id=row["target_cell_id"],
                )
            )

    def _apply(self, op: AgentOp) -> None:
        try:
            self.cell_by_op[op.seq] = self._apply_to(self.template, op)
        except (KeyError, ValueError, CellConfigError) as exc:
            # Every replica fails the same op the same way, so populations stay identical.
            self.op_errors[op.seq] = str(exc)
            log.warning("agent_op_not_applied", seq=op.seq, op=op.op, error=str(exc))
        else:
            for engine in self.engines.values():
                self._apply_to(engine, op)
        self.applied_agent_seq = op.seq

    @staticmethod
    def _apply_to(engine: DetectionEngine, op: AgentOp) -> str:
        if op.op == "create" and op.cell_type is not None:
            return engine.add_cell(op.cell_type, op.params).cell_id
        if op.op == "clone" and op.target_cell_id is not None:
            return engine.clone_cell(op.target_cell_id).cell_id
        if op.op == "delete" and op.target_cell_id is not None:
            # A forced delete (params {"force": true}) may remove the last cell of a required type.
            engine.remove_cell(op.target_cell_id, force=bool((op.params or {}).get("force")))
            return op.target_cell_id
        raise ValueError(f"malformed agent op {op.op!r}")

    @staticmethod
    async def record_agent_op(
        conn: Connection,
        lock_table_sql: str,
        op: str,
        *,
        cell_type: str | None = None,
        params: dict[str, Any] | None = None,
        target_cell_id: str | None = None,
    ) -> int:
        if lock_table_sql:
            # Sequence numbers must become visible in order, or a replica could apply them out of order.
            await conn.execute(lock_table_sql.format(table="agent_ops"))
        seq = await conn.fetchval(
            "INSERT INTO agent_ops (op, cell_type, params, target_cell_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING seq",
            op,
            cell_type,
            json.dumps(params) if params is not None else None,
            target_cell_id,
            time.time(),
        )
        return int(seq)

    # -- rebuilding state --------------------------------------------------------------------------
    async def warm_up(self, window_s: float, max_events: int) -> int:
        """Replay stored, processed events into fresh engines; returns how many were replayed.

        Only events whose verdict was committed (``processed_at`` set) are replayed: the others are
        still ahead of the consumer group, which runs them through detection exactly once. An event that
        raises is skipped and recorded in ``replay_failures`` (the caller dead-letters it), so one bad
        stored event can never keep the service from booting.
        """
        await self.sync_agents()
        replayed = len(await self.sync_intel())
        await self.sync_memory()  # memory first: the replay must not relearn (and re-publish) it
        await self.sync_self()  # tolerance too, and the training window goes on where it was
        if window_s <= 0 or max_events <= 0:
            return replayed
        since = time.time() - window_s
        async with self._db.session() as conn:
            rows = await conn.fetch(
                "SELECT event_id, kind, payload FROM (SELECT event_id, kind, payload, occurred_at,"
                " received_at"
                " FROM events WHERE kind <> 'intel' AND received_at >= $1 AND processed_at IS NOT NULL"
                " ORDER BY received_at DESC LIMIT $2) recent ORDER BY occurred_at",
                since,
                max_events,
            )
        for index, row in enumerate(rows):
            try:
                event = parse_event(row["payload"])
                lane = self.lane(TOPIC_BY_KIND[event.kind], self._partition_of(partition_key(event)))
                self.process(event, lane, replay=True)
                self._discard_replay_outputs(lane)
            except Exception as exc:
                self._metrics.detection_errors.inc()
                log.exception("replay_detection_failed", event_id=str(row["event_id"]))
                failure = ReplayFailure(
                    str(row["event_id"]), str(row["kind"]), str(row["payload"]), type(exc).__name__, str(exc)
                )
                self.replay_failures.append(failure)
            if index % 100 == 99:
                await asyncio.sleep(0)  # keep answering /health/live and signals while replaying
        log.info("detection_state_rebuilt", events=len(rows) + replayed, window_s=window_s)
        return len(rows) + replayed

    async def sync_intel(self) -> list[tuple[str, list[Threat]]]:
        """Feed intel stored since the last sync (by any replica) to every engine.

        Returns, per intel event newly fed, the threats it raised (usually none) for the caller to store.
        """
        # Overlap the watermark a little: a transaction that started earlier may commit later.
        since = max(0.0, self._intel_watermark - 5.0)
        async with self._db.session() as conn:
            rows = await conn.fetch(
                "SELECT event_id, payload, received_at FROM events WHERE kind = 'intel' AND received_at >= $1"
                " ORDER BY occurred_at",
                since,
            )
        raised: list[tuple[str, list[Threat]]] = []
        for row in rows:
            self._intel_watermark = max(self._intel_watermark, float(row["received_at"]))
            if str(row["event_id"]) in self._seen_intel:
                continue
            item = parse_event(row["payload"])
            if isinstance(item, IntelItem):
                raised.append((str(row["event_id"]), self.learn_intel(item)))
        return raised
