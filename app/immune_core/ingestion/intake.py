"""HTTP intake: validate every event of a request, store the new ones, forward them to the group.

The request is answered only after the transaction that stores the events (and the outbox rows that
forward them to their input topic) commits, so a 2xx always means "durably stored". Detection then runs
in the consumer group, which owns the per-antigen detection state, exactly as for Kafka-borne events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from immune_core.events.models import EndpointEvent, EventValidationError, IntelItem, NetworkFlow, parse_event
from immune_core.observability.metrics import Metrics
from immune_core.processing.counters import IntakeCounters
from immune_core.storage import repository as repo
from immune_core.storage.database import Database

AnyEvent = NetworkFlow | EndpointEvent | IntelItem


class EventsRejected(ValueError):
    """At least one event of the request is invalid; nothing of the request was stored."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid event(s)")
        self.errors = errors


@dataclass(frozen=True)
class IntakeResult:
    accepted: list[str]
    duplicates: list[str]


@dataclass
class _Pending:
    events: list[AnyEvent]
    # str(event_id) of each event (``event_key``), in order: formatted once per event (a UUID's str() was ~5 %
    # of the service's CPU on batches when every step formatted it again; docs/performance.md).
    ids: list[str]
    done: asyncio.Future[set[str]]


class EventIntake:
    """Validates requests and stores their events with group commit.

    Concurrent requests are written together: one writer task takes everything queued, stores it in one
    transaction and then answers each request. Under load this turns N commits (N fsyncs) into one,
    while a lone request is written at once (the writer never waits for company).
    """

    def __init__(
        self,
        database: Database,
        metrics: Metrics,
        counters: IntakeCounters,
        on_stored: Callable[[], None],
        *,
        max_group_events: int = 2000,
        instance_id: str = "",
    ) -> None:
        self._db = database
        self._metrics = metrics
        self._counters = counters
        self._on_stored = on_stored
        self._max_group = max_group_events
        self._instance_id = instance_id
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def accept(self, raw_events: Sequence[object]) -> IntakeResult:
        events: list[AnyEvent] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(raw_events):
            try:
                events.append(parse_event(raw))
            except EventValidationError as exc:
                errors.append({"index": index, "message": exc.message, "errors": exc.errors})
                kind = raw.get("kind") if isinstance(raw, dict) else None
                self._metrics.events.labels(
                    kind=kind if kind in ("network_flow", "endpoint", "intel") else "unknown",
                    outcome="invalid",
                    source="api",
                ).inc()
        if errors:
            self._counters.rejected += len(errors)
            raise EventsRejected(errors)

        by_id = {e.event_key: e for e in events}
        unique, ids = list(by_id.values()), list(by_id)
        pending = _Pending(unique, ids, asyncio.get_running_loop().create_future())
        self._ensure_writer()
        await self._queue.put(pending)
        fresh = await pending.done

        new_ids = [i for i in ids if i in fresh]
        duplicates = [i for i in ids if i not in fresh]
        # One increment per (kind, outcome), not per event: the same totals without a look-up per event.
        outcomes = Counter(
            (event.kind, "stored" if event_id in fresh else "duplicate")
            for event_id, event in zip(ids, unique, strict=True)
        )
        for (kind, outcome), count in outcomes.items():
            self._metrics.events.labels(kind=kind, outcome=outcome, source="api").inc(count)
        self._counters.accepted += len(new_ids)
        self._counters.duplicates += len(duplicates)
        return IntakeResult(accepted=new_ids, duplicates=duplicates)

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name="intake-group-commit")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_forever(self) -> None:
        while True:
            group = [await self._queue.get()]
            size = len(group[0].events)
            while size < self._max_group and not self._queue.empty():
                group.append(self._queue.get_nowait())
                size += len(group[-1].events)
            await self._write(group)

    async def _write(self, group: list[_Pending]) -> None:
        live = [p for p in group if not p.done.cancelled()]  # a client that went away is not waited for
        try:
            async with self._db.transaction() as conn:
                events = [e for p in live for e in p.events]
                ids = [i for p in live for i in p.ids]
                payloads = [repo.event_json(e) for e in events]  # stored and forwarded: serialised once
                fresh = set(await repo.insert_events(conn, events, "api", payloads))
                forwarded = {
                    i: (e, text) for i, e, text in zip(ids, events, payloads, strict=True) if i in fresh
                }
                await repo.enqueue(conn, [repo.forward_message(e, text) for e, text in forwarded.values()])
                # Acknowledged in the database, with the events: the answers below follow this commit.
                await repo.record_acknowledged(conn, self._instance_id, "api", len(fresh))
        except Exception as exc:
            # Nothing of the group was committed: every request of it fails (503 for a database outage).
            for p in live:
                if not p.done.done():
                    p.done.set_exception(exc)
            return
        self._on_stored()
        # Within one group an event_id is new only for the first request that carried it.
        claimed: set[str] = set()
        for p in live:
            mine = {i for i in p.ids if i in fresh and i not in claimed}
            claimed |= mine
            if not p.done.done():
                p.done.set_result(mine)
