"""SQL for events, threats, immunological memory and the outbox (written together, in one transaction).

Every function takes an open ``Connection`` so callers decide the transaction boundary: an event and
everything it causes (threats, memory, outbox rows) commit or roll back together.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from immune_core.adaptive.state import CLONING_EXPANDED_TOPIC, ClonalExpansion
from immune_core.cells.cytokine import Cytokine
from immune_core.detection.threat import SEVERITY_RANK, Threat
from immune_core.events.models import (
    TOPIC_BY_KIND,
    EndpointEvent,
    IntelItem,
    NetworkFlow,
    event_to_json_dict,
    partition_key,
)
from immune_core.responses.proposals import Decision, ResponseProposed
from immune_core.responses.validation import RESPONSES_PROPOSED_TOPIC
from immune_core.storage.database import Connection

AnyEvent = NetworkFlow | EndpointEvent | IntelItem
T = TypeVar("T")

THREATS_TOPIC = "immunis.threats.detected"
ALERTS_TOPIC = "immunis.homeostasis.alerts"
DLQ_TOPIC = "immunis.dlq"


# One encoder for the process: ``json.dumps`` with any option builds a new ``JSONEncoder`` per call,
# a fifth of the cost of serialising an event (docs/performance.md); the text is the same.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def dumps(value: object) -> str:
    """Compact JSON with sorted keys (ASCII-escaped, as ``json.dumps``): the stored and forwarded form."""
    return _ENCODER.encode(value)


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: str | None
    payload: str


def event_json(event: AnyEvent) -> str:
    return dumps(event_to_json_dict(event))


def forward_message(event: AnyEvent, payload: str | None = None) -> OutboxMessage:
    """The event on its input topic, so the consumer group (which owns detection state) processes it.

    ``payload`` is ``event_json(event)`` when the caller already has it (the intake stores and forwards
    the same text: serialising each event twice was ~5 % of a batch's CPU, docs/performance.md).
    """
    text = event_json(event) if payload is None else payload
    return OutboxMessage(TOPIC_BY_KIND[event.kind], partition_key(event), text)


def threat_message(threat: Threat) -> OutboxMessage:
    return OutboxMessage(THREATS_TOPIC, threat.antigen, threat.model_dump_json())


def cytokine_message(cytokine: Cytokine) -> OutboxMessage:
    return OutboxMessage(cytokine.topic, cytokine.antigen, cytokine.model_dump_json())


def expansion_message(expansion: ClonalExpansion) -> OutboxMessage:
    return OutboxMessage(CLONING_EXPANDED_TOPIC, expansion.antigen, expansion.model_dump_json())


def response_message(decision: Decision) -> OutboxMessage:
    """An allowed action on ``immunis.responses.proposed`` (schema ``ResponseProposed``), keyed by target."""
    body = ResponseProposed(action=decision.action, verdict=decision.verdict)
    return OutboxMessage(RESPONSES_PROPOSED_TOPIC, decision.action.target, body.model_dump_json())


# Rows per multi-row statement: 7 parameters each stays far below SQLite's and PostgreSQL's limits.
_CHUNK = 500


def _chunks(items: Sequence[T], size: int = _CHUNK) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@functools.lru_cache(maxsize=256)
def _placeholders(rows: int, columns: int, offset: int = 0) -> str:
    """``($1, $2), ($3, $4)`` for rows x columns numbered parameters (after ``offset`` others)."""
    return ", ".join(
        "(" + ", ".join(f"${offset + r * columns + c + 1}" for c in range(columns)) + ")" for r in range(rows)
    )


def _id_list(count: int, offset: int) -> str:
    return ", ".join(f"${offset + i + 1}" for i in range(count))


async def insert_events(
    conn: Connection, events: Sequence[AnyEvent], source: str, payloads: Sequence[str] | None = None
) -> list[str]:
    """Store events not seen before; returns the ids that were new (idempotent on ``event_id``).

    ``payloads``, when given, are ``event_json`` of ``events`` in the same order (computed once by a
    caller that forwards them too); ``ValueError`` when the two lengths differ.
    """
    if payloads is None:
        payloads = [event_json(event) for event in events]
    elif len(payloads) != len(events):
        raise ValueError(f"{len(payloads)} payloads for {len(events)} events")
    received_at = time.time()
    inserted: list[str] = []
    for start in range(0, len(events), _CHUNK):
        chunk = events[start : start + _CHUNK]
        args: list[object] = []
        for event, payload in zip(chunk, payloads[start : start + _CHUNK], strict=True):
            args += [
                event.event_key,
                event.kind,
                event.timestamp.timestamp(),
                received_at,
                source,
                payload,
            ]
        rows = await conn.fetch(
            "INSERT INTO events (event_id, kind, occurred_at, received_at, source, payload) VALUES "  # noqa: S608  # nosec B608
            + _placeholders(len(chunk), 6)
            + " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            *args,
        )
        inserted.extend(str(r["event_id"]) for r in rows)
    return inserted


async def record_acknowledged(conn: Connection, instance_id: str, source: str, count: int) -> None:
    """Count ``count`` new events as acknowledged by ``instance_id`` (HTTP 2xx, Kafka offset commit).

    Call it in the transaction that stores those events: the count then commits (or rolls back) with
    them, lives in the database rather than in one process, and adds up across replicas and restarts
    (``GET /api/v1/stats``). One row per (instance, source) keeps replicas off each other's row lock.
    """
    if count <= 0:
        return
    await conn.execute(
        "INSERT INTO event_acknowledgements (instance_id, source, acknowledged, updated_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, source) DO UPDATE SET"
        " acknowledged = event_acknowledgements.acknowledged + excluded.acknowledged,"
        " updated_at = excluded.updated_at",
        instance_id,
        source,
        count,
        time.time(),
    )


async def processed_among(conn: Connection, event_ids: Iterable[str]) -> set[str]:
    done: set[str] = set()
    for chunk in _chunks(list(event_ids)):
        rows = await conn.fetch(
            "SELECT event_id FROM events WHERE processed_at IS NOT NULL AND event_id IN ("  # noqa: S608  # nosec B608
            + _id_list(len(chunk), 0)
            + ")",
            *chunk,
        )
        done.update(str(r["event_id"]) for r in rows)
    return done


async def claim_processed(conn: Connection, event_ids: Iterable[str]) -> set[str]:
    """Mark events processed; returns those this transaction claimed (not already claimed by another)."""
    now = time.time()
    claimed: set[str] = set()
    for chunk in _chunks(list(event_ids)):
        rows = await conn.fetch(
            "UPDATE events SET processed_at = $1 WHERE processed_at IS NULL AND event_id IN ("  # noqa: S608  # nosec B608
            + _id_list(len(chunk), 1)
            + ") RETURNING event_id",
            now,
            *chunk,
        )
        claimed.update(str(r["event_id"]) for r in rows)
    return claimed


async def insert_threats(conn: Connection, cause_event_id: str, threats: Sequence[Threat]) -> list[Threat]:
    """Store threats (ids are derived, so a replay stores nothing twice) and update memory."""
    stored_at = time.time()
    inserted: list[Threat] = []
    for threat in threats:
        seq = await conn.fetchval(
            "INSERT INTO threats (threat_id, signature, detected_at, stored_at, category, antigen_type,"
            " antigen, severity, severity_rank, confidence, host_id, cause_event_id, payload)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            " ON CONFLICT (threat_id) DO NOTHING RETURNING seq",
            str(threat.threat_id),
            threat.signature,
            threat.detected_at.timestamp(),
            stored_at,
            threat.category,
            threat.antigen_type,
            threat.antigen,
            threat.severity,
            SEVERITY_RANK[threat.severity],
            threat.confidence,
            threat.host_id,
            cause_event_id,
            threat.model_dump_json(),
        )
        if seq is None:
            continue
        inserted.append(threat)
        await conn.execute(
            "INSERT INTO memory_signatures (signature, category, antigen_type, antigen, first_seen,"
            " last_seen, occurrences, max_severity_rank) VALUES ($1, $2, $3, $4, $5, $5, 1, $6)"
            " ON CONFLICT (signature) DO UPDATE SET last_seen = excluded.last_seen,"
            " occurrences = memory_signatures.occurrences + 1,"
            " max_severity_rank = CASE WHEN excluded.max_severity_rank > memory_signatures.max_severity_rank"
            " THEN excluded.max_severity_rank ELSE memory_signatures.max_severity_rank END",
            threat.signature,
            threat.category,
            threat.antigen_type,
            threat.antigen,
            stored_at,
            SEVERITY_RANK[threat.severity],
        )
    return inserted


async def enqueue(conn: Connection, messages: Sequence[OutboxMessage]) -> None:
    if not messages:
        return
    now = time.time()
    await conn.executemany(
        "INSERT INTO outbox (topic, message_key, payload, created_at) VALUES ($1, $2, $3, $4)",
        [(m.topic, m.key, m.payload, now) for m in messages],
    )
