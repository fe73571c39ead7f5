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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
from immune_core.storage.database import Connection, Database

log = get_logger(__name__)
AnyEvent = NetworkFlow | EndpointEvent | IntelItem
PartitionOf = Callable[[str], int]
_SEEN_INTEL_LIMIT = 200_000


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
        self._intel_watermark = 0.0

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

    def process(self, event: AnyEvent, lane: str, *, replay: bool = False) -> list[Threat]:
        """Run a flow or endpoint event through its lane's engine (intel goes to ``learn_intel``)."""
        threats = self._run(self.engine_for(lane), event)
        if not replay:
            for threat in threats:
                for cell in threat.cells:
                    self._metrics.detections.labels(cell=cell).inc()
        return threats

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

    def _run(self, engine: DetectionEngine, event: AnyEvent) -> list[Threat]:
        try:
            return engine.process(event)
        except Exception:
            # A detection bug on one event must not stall the partition behind it (the consumer would
            # retry the same batch forever): the event stays stored and is counted as a detection error.
            self._metrics.detection_errors.inc()
            log.exception("detection_failed", event_id=str(event.event_id), kind=event.kind)
            return []

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
            engine.remove_cell(op.target_cell_id)
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
        """Replay stored events into fresh engines; returns how many were replayed."""
        await self.sync_agents()
        replayed = len(await self.sync_intel())
        if window_s <= 0 or max_events <= 0:
            return replayed
        since = time.time() - window_s
        async with self._db.session() as conn:
            rows = await conn.fetch(
                "SELECT payload FROM (SELECT payload, occurred_at, received_at FROM events"
                " WHERE kind <> 'intel' AND received_at >= $1 ORDER BY received_at DESC LIMIT $2) recent"
                " ORDER BY occurred_at",
                since,
                max_events,
            )
        for index, row in enumerate(rows):
            event = parse_event(row["payload"])
            lane = self.lane(TOPIC_BY_KIND[event.kind], self._partition_of(partition_key(event)))
            self.process(event, lane, replay=True)
            if index % 100 == 99:
                await asyncio.sleep(0)  # keep answering /health/live and signals while replaying
        self.drain_cytokines()
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
