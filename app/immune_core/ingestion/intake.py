"""HTTP intake: validate every event of a request, store the new ones, forward them to the group.

The request is answered only after the transaction that stores the events (and the outbox rows that
forward them to their input topic) commits, so a 2xx always means "durably stored". Detection then runs
in the consumer group, which owns the per-antigen detection state, exactly as for Kafka-borne events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from immune_core.events.models import EventValidationError, parse_event
from immune_core.ingestion import repository as repo
from immune_core.observability.metrics import Metrics
from immune_core.processing.counters import IntakeCounters
from immune_core.storage.database import Database


class EventsRejected(ValueError):
    """At least one event of the request is invalid; nothing of the request was stored."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid event(s)")
        self.errors = errors


@dataclass(frozen=True)
class IntakeResult:
    accepted: list[str]
    duplicates: list[str]


class EventIntake:
    def __init__(
        self, database: Database, metrics: Metrics, counters: IntakeCounters, on_stored: Callable[[], None]
    ) -> None:
        self._db = database
        self._metrics = metrics
        self._counters = counters
        self._on_stored = on_stored

    async def accept(self, raw_events: Sequence[object]) -> IntakeResult:
        events = []
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

        unique = list({str(e.event_id): e for e in events}.values())
        async with self._db.transaction() as conn:
            new_ids = await repo.insert_events(conn, unique, "api")
            fresh = set(new_ids)
            await repo.enqueue(conn, [repo.forward_message(e) for e in unique if str(e.event_id) in fresh])
        self._on_stored()

        duplicates = [str(e.event_id) for e in unique if str(e.event_id) not in fresh]
        for event in unique:
            outcome = "stored" if str(event.event_id) in fresh else "duplicate"
            self._metrics.events.labels(kind=event.kind, outcome=outcome, source="api").inc()
        self._counters.accepted += len(new_ids)
        self._counters.duplicates += len(duplicates)
        return IntakeResult(accepted=new_ids, duplicates=duplicates)
