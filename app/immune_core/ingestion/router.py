"""``POST /api/v1/events`` and ``GET /api/v1/stats``."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from immune_core.api.deps import CountersDep, DatabaseDep, IntakeDep, SettingsDep, UptimeDep
from immune_core.api.errors import ApiError, responses
from immune_core.api.security import Principal, authorize, require_ingest, require_read
from immune_core.events.models import EventValidationError, parse_event
from immune_core.events.text import MAX_JSON_DEPTH, UnreadableJson, read_json
from immune_core.ingestion import queries

router = APIRouter(tags=["events"])


class IngestResponse(BaseModel):
    accepted: int = Field(description="Events stored by this request (new event_ids).")
    duplicates: int = Field(description="Events already stored earlier (idempotent on event_id).")
    event_ids: list[str]
    duplicate_ids: list[str]


class StatsResponse(BaseModel):
    instance_id: str
    events_accepted: int = Field(description="New events this process acknowledged (HTTP 2xx, Kafka commit).")
    events_duplicate: int
    events_rejected: int
    events_dead_lettered: int
    events_acknowledged: int = Field(
        description="New events acknowledged by every replica, recorded in the database with the events"
        " (all replicas, survives restarts); equals events_stored unless an acknowledged event was lost."
    )
    events_stored: int = Field(description="Events in the database (all replicas).")
    events_processed: int = Field(description="Stored events that detection has run on.")
    threats: int
    dead_letters: int
    outbox_pending: int
    uptime_s: float


_BODY_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/Event"},
        {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Event"}}
            },
            "additionalProperties": False,
        },
    ]
}
_DESCRIPTION = (
    "Answers 202 only once every new event is durably stored; a batch is all-or-nothing. Refused: a body "
    f"that is not JSON or nests deeper than {MAX_JSON_DEPTH} levels (400), JSON text holding an event "
    "(double-encoded, 400), two different events with one event_id in a batch (422 naming the index), "
    "an event stamped later than the service's clock plus IMMUNE_MAX_CLOCK_SKEW_S (422)."
)


def document_batch_bounds(openapi: dict[str, Any], path: str, max_batch_events: int) -> None:
    """State the configured batch limit (``maxItems``) in a generated OpenAPI document, in place."""
    schema = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema["oneOf"][1]["properties"]["events"]["maxItems"] = max_batch_events


def _double_encoded(where: str) -> ApiError:
    return ApiError(
        400,
        "double_encoded_json",
        f"{where} is a JSON string, not an object: send the event itself, not JSON text holding it",
    )


def _same_event(first: object, second: object) -> bool:
    try:
        return parse_event(first) == parse_event(second)
    except EventValidationError:
        return True  # not a conflict to report here: validation names the invalid event by its index


def _refuse_conflicting_ids(events: list[object]) -> None:
    """One event_id names one event: a batch may repeat an event, never reuse its id for another."""
    first_index: dict[UUID, int] = {}
    for index, item in enumerate(events):
        raw_id = item.get("event_id") if isinstance(item, dict) else None
        if not isinstance(raw_id, str):
            continue
        try:
            event_id = UUID(raw_id)
        except ValueError:
            continue  # validation reports it
        earlier = first_index.setdefault(event_id, index)
        if earlier != index and not _same_event(events[earlier], item):
            reason = f"reuses the event_id {event_id} of events[{earlier}] for a different event"
            raise ApiError(
                422,
                "conflicting_event_id",
                f"events[{index}] {reason}; nothing was stored",
                details=[{"index": index, "field": "event_id", "reason": reason, "first_index": earlier}],
            )


@router.post(
    "/events",
    status_code=202,
    response_model=IngestResponse,
    summary="Ingest one event or a batch ({'events': [...]})",
    description=_DESCRIPTION,
    responses=responses(400, 401, 403, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
)
async def ingest(
    request: Request,
    intake: IntakeDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_ingest)],
) -> IngestResponse:
    raw = await request.body()
    try:
        body = read_json(raw)
    except UnreadableJson as exc:
        raise ApiError(400, "malformed_json", f"body {exc.reason}") from None
    if isinstance(body, str):
        raise _double_encoded("the body")
    if isinstance(body, dict) and "events" in body and "kind" not in body:
        extra = set(body) - {"events"}
        if extra or not isinstance(body["events"], list):
            raise ApiError(422, "invalid_batch", "a batch is {'events': [...]} and nothing else")
        events: list[object] = body["events"]
        if not events:
            raise ApiError(422, "invalid_batch", "a batch must hold at least one event")
        if len(events) > settings.max_batch_events:
            raise ApiError(
                413,
                "batch_too_large",
                f"batch holds {len(events)} events; the limit is {settings.max_batch_events}",
            )
        for index, item in enumerate(events):
            if isinstance(item, str):
                raise _double_encoded(f"events[{index}]")
        _refuse_conflicting_ids(events)
    else:
        events = [body]
    if any(isinstance(event, dict) and event.get("kind") == "intel" for event in events):
        # Intel makes every macrophage flag an indicator: injecting it is an operator's act.
        authorize(principal, "operate", "an intel event")
    result = await intake.accept(events)
    return IngestResponse(
        accepted=len(result.accepted),
        duplicates=len(result.duplicates),
        event_ids=result.accepted,
        duplicate_ids=result.duplicates,
    )


@router.get(
    "/stats",
    response_model=StatsResponse,
    responses=responses(401, 403, 429, 503),
    dependencies=[Depends(require_read)],
)
async def stats(
    database: DatabaseDep, counters: CountersDep, settings: SettingsDep, uptime_s: UptimeDep
) -> StatsResponse:
    counts = await queries.stored_counts(database)
    if counts is None:  # an aggregate SELECT always returns a row; guard for the type checker
        raise ApiError(503, "storage_unavailable", "no answer from storage")
    c = counters
    return StatsResponse(
        instance_id=settings.instance_id,
        events_accepted=c.accepted,
        events_duplicate=c.duplicates,
        events_rejected=c.rejected,
        events_dead_lettered=c.dead_lettered,
        events_acknowledged=int(counts["acknowledged"]),
        events_stored=int(counts["stored"]),
        events_processed=int(counts["processed"]),
        threats=int(counts["threats"]),
        dead_letters=int(counts["dead_letters"]),
        outbox_pending=int(counts["outbox"]),
        uptime_s=round(uptime_s, 3),
    )
