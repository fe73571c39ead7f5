"""Finding stored events that detection never processed, and sending them round again.

An event accepted over HTTP is stored with an outbox row that forwards it to its input topic; the
consumer group marks it processed when it commits detection's verdict. If the forward is ever lost
(a topic recreated, retention passed while the consumers were down, a bug), the event would stay
undetected for good. Every ``interval_s`` the sweeper counts events unprocessed for longer than
``grace_s`` (the ``immune_events_unprocessed`` gauge, alerted on) and, when the outbox relay is
keeping up (its oldest row is younger than ``grace_s``), forwards them again, each at most once per
``reforward_after_s``. Re-forwarding is safe: the consumer skips events already processed.
Several replicas sweep at once without overlap (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from immune_core.events.models import parse_event
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.storage import repository as repo
from immune_core.storage.database import Database, StoreUnavailable

log = get_logger(__name__)


class UnprocessedSweeper:
    def __init__(
        self,
        database: Database,
        metrics: Metrics,
        on_forwarded: Callable[[], None],
        *,
        grace_s: float = 60.0,
        reforward_after_s: float = 300.0,
        interval_s: float = 15.0,
        batch_size: int = 500,
    ) -> None:
        self._db = database
        self._metrics = metrics
        self._on_forwarded = on_forwarded
        self._grace = grace_s
        self._reforward_after = reforward_after_s
        self._interval = interval_s
        self._batch = batch_size

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep_once()
            except StoreUnavailable:
                continue

    async def sweep_once(self, now: float | None = None) -> int:
        """One pass; returns how many events were forwarded again."""
        now = time.time() if now is None else now
        cutoff = now - self._grace
        async with self._db.session() as conn:
            waiting = int(
                await conn.fetchval(
                    "SELECT count(*) FROM events WHERE processed_at IS NULL AND received_at < $1", cutoff
                )
                or 0
            )
            self._metrics.events_unprocessed.set(waiting)
            if waiting == 0:
                return 0
            oldest = await conn.fetchval("SELECT min(created_at) FROM outbox")
        if oldest is not None and float(oldest) < cutoff:
            return 0  # the relay is behind (bus down?): the forwards are still queued, adding more won't help
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT event_id, payload FROM events WHERE processed_at IS NULL AND received_at < $1"  # noqa: S608  # nosec B608
                " AND (forwarded_at IS NULL OR forwarded_at < $2) ORDER BY received_at LIMIT $3"
                + self._db.skip_locked,
                cutoff,
                now - self._reforward_after,
                self._batch,
            )
            if not rows:
                return 0
            await repo.enqueue(conn, [repo.forward_message(parse_event(r["payload"])) for r in rows])
            await conn.executemany(
                "UPDATE events SET forwarded_at = $1 WHERE event_id = $2",
                [(now, str(r["event_id"])) for r in rows],
            )
        self._metrics.events_reforwarded.inc(len(rows))
        log.warning("unprocessed_events_reforwarded", events=len(rows), waiting=waiting)
        self._on_forwarded()
        return len(rows)
