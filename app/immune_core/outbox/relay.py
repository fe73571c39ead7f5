"""Drains the outbox to the bus. Rows are deleted only in the transaction that saw them published, so
a bus outage (or a crash mid-publish) leaves them to be sent again: at-least-once, nothing lost.
Several replicas may relay at once: ``FOR UPDATE SKIP LOCKED`` gives each its own rows.

A database outage between the publish and the commit of its delete would send the rows again once the
database is back. The relay remembers such rows (published, delete not committed) and deletes them
first, without publishing, in its next transaction: no duplicate on the topic while the process lives.
A process killed in that window still republishes (at-least-once); consumers key on the message key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.storage.database import Database, StoreUnavailable
from immune_core.transport.bus import Bus, BusUnavailable, OutboundMessage

log = get_logger(__name__)


def _family(topic: str) -> str:
    # Bounded label cardinality: immunis.cytokines.il8 -> immunis.cytokines
    parts = topic.split(".")
    return ".".join(parts[:2]) if parts[0] == "immunis" else topic


class OutboxRelay:
    def __init__(
        self, database: Database, bus: Bus, metrics: Metrics, *, batch_size: int, poll_interval_s: float
    ) -> None:
        self._db = database
        self._bus = bus
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll = poll_interval_s
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        # Outbox ids the bus acknowledged whose delete has not committed yet.
        self._published: set[int] = set()

    def wake(self) -> None:
        """Something was just written to the outbox: don't wait for the next poll."""
        self._wake.set()

    async def run(self) -> None:
        backoff = self._poll
        while True:
            try:
                published = await self.drain_once()
                self.last_error = None
                backoff = self._poll
            except (BusUnavailable, StoreUnavailable) as exc:
                self.last_error = type(exc).__name__
                log.warning("outbox_relay_waiting", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if published >= self._batch_size:
                continue  # more is waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def drain_once(self) -> int:
        """Publish up to ``batch_size`` outbox rows and delete them; returns how many were published.

        Raises ``BusUnavailable`` or ``StoreUnavailable``; what was not deleted is sent at the next call,
        except rows already published (see the module docstring).
        """
        async with self._db.transaction() as conn:
            if self._published:
                done = [(i,) for i in sorted(self._published)]
                await conn.executemany("DELETE FROM outbox WHERE id = $1", done)
            rows = await conn.fetch(
                "SELECT id, topic, message_key, payload FROM outbox ORDER BY id LIMIT $1"  # noqa: S608  # nosec B608
                + self._db.skip_locked,
                self._batch_size,
            )
            if rows:
                await self._bus.publish(
                    [OutboundMessage(r["topic"], r["message_key"], str(r["payload"]).encode()) for r in rows]
                )
                self._published.update(int(r["id"]) for r in rows)
                # One increment per topic family, not per row (no label look-up per row).
                for family, count in Counter(_family(str(row["topic"])) for row in rows).items():
                    self._metrics.outbox_published.labels(topic_family=family).inc(count)
                await conn.executemany("DELETE FROM outbox WHERE id = $1", [(r["id"],) for r in rows])
        self._published.clear()  # committed: every remembered row is gone
        return len(rows)

    async def depth(self) -> int:
        async with self._db.session() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM outbox") or 0)
