"""The replica's detection engine, kept in step with the cluster.

* Cell population: API changes are an ordered log (``agent_ops``) that every replica applies in the same
  order, so the engine's sequential cell ids agree across replicas.
* State after a restart: rebuilt by replaying stored events (live intel, then the recent window), with
  the resulting threats discarded — they were stored the first time round.
* Intel: every replica must know every indicator, but the consumer group gives each replica only some
  partitions; intel arriving through another replica is picked up from the store (``sync_intel``).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from immune_core.cells.base import CellConfigError
from immune_core.cells.cytokine import Cytokine
from immune_core.detection.engine import DetectionEngine
from immune_core.detection.threat import Threat
from immune_core.events.models import EndpointEvent, IntelItem, NetworkFlow, parse_event
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.storage.database import Connection, Database

log = get_logger(__name__)
AnyEvent = NetworkFlow | EndpointEvent | IntelItem
_SEEN_INTEL_LIMIT = 200_000


@dataclass(frozen=True)
class AgentOp:
    seq: int
    op: str  # create | delete | clone
    cell_type: str | None
    params: dict[str, Any] | None
    target_cell_id: str | None


class EngineHost:
    def __init__(self, database: Database, metrics: Metrics, engine: DetectionEngine | None = None) -> None:
        self._db = database
        self._metrics = metrics
        self.engine = engine or DetectionEngine()
        self.applied_agent_seq = 0
        # Which cell each applied op produced, so the API can answer with the cell it created.
        self.cell_by_op: dict[int, str] = {}
        self.op_errors: dict[int, str] = {}
        self._seen_intel: OrderedDict[str, None] = OrderedDict()
        self._intel_watermark = 0.0

    # -- detection ---------------------------------------------------------------------------------
    def process(self, event: AnyEvent, *, replay: bool = False) -> list[Threat]:
        if isinstance(event, IntelItem):
            key = str(event.event_id)
            if key in self._seen_intel:
                return []
            self._seen_intel[key] = None
            if len(self._seen_intel) > _SEEN_INTEL_LIMIT:
                self._seen_intel.popitem(last=False)
        try:
            threats = self.engine.process(event)
        except Exception:
            # A detection bug on one event must not stall the partition behind it (the consumer would
            # retry the same batch forever): the event stays stored and is counted as a detection error.
            self._metrics.detection_errors.inc()
            log.exception("detection_failed", event_id=str(event.event_id), kind=event.kind)
            return []
        for threat in [] if replay else threats:
            for cell in threat.cells:
                self._metrics.detections.labels(cell=cell).inc()
        return threats

    def drain_cytokines(self) -> list[Cytokine]:
        return self.engine.drain_cytokines()

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
            if op.op == "create" and op.cell_type is not None:
                self.cell_by_op[op.seq] = self.engine.add_cell(op.cell_type, op.params).cell_id
            elif op.op == "clone" and op.target_cell_id is not None:
                self.cell_by_op[op.seq] = self.engine.clone_cell(op.target_cell_id).cell_id
            elif op.op == "delete" and op.target_cell_id is not None:
                self.engine.remove_cell(op.target_cell_id)
                self.cell_by_op[op.seq] = op.target_cell_id
            else:
                raise ValueError(f"malformed agent op {op.op!r}")
        except (KeyError, ValueError, CellConfigError) as exc:
            # Every replica fails the same op the same way, so populations stay identical.
            self.op_errors[op.seq] = str(exc)
            log.warning("agent_op_not_applied", seq=op.seq, op=op.op, error=str(exc))
        self.applied_agent_seq = op.seq

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
        """Replay stored events into a fresh engine; returns how many were replayed."""
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
        for row in rows:
            self.process(parse_event(row["payload"]), replay=True)
        self.engine.drain_cytokines()
        log.info("detection_state_rebuilt", events=len(rows) + replayed, window_s=window_s)
        return len(rows) + replayed

    async def sync_intel(self) -> list[tuple[str, list[Threat]]]:
        """Feed intel stored since the last sync (by any replica) to this engine.

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
            raised.append((str(row["event_id"]), self.process(parse_event(row["payload"]))))
        return raised
