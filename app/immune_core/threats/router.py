"""``/api/v1/threats``: list with filters and cursor pagination (newest first), get one."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from immune_core.api.deps import DatabaseDep
from immune_core.api.errors import ApiError, responses
from immune_core.api.security import require_read
from immune_core.detection.threat import SEVERITY_RANK, Threat, ThreatCategory, ThreatSeverity
from immune_core.events.text import STORABLE_TEXT_PATTERN
from immune_core.threats import queries
from immune_core.threats.queries import ThreatFilter

router = APIRouter(tags=["threats"], dependencies=[Depends(require_read)])


class StoredThreat(Threat):
    seq: int = Field(description="Storage order; also the pagination cursor.")
    stored_at: float = Field(description="When it was stored (Unix seconds).")


class ThreatPage(BaseModel):
    items: list[StoredThreat]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next (older) page; null at the end."
    )


def _parse_since(value: str) -> float:
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_request", "since: not an RFC 3339 date-time") from None
    if instant.tzinfo is None:
        raise ApiError(422, "invalid_request", "since: must include a UTC offset (RFC 3339)")
    return instant.timestamp()


def _stored(row: dict[str, Any]) -> StoredThreat:
    return StoredThreat.model_validate(
        {**json.loads(row["payload"]), "seq": int(row["seq"]), "stored_at": float(row["stored_at"])}
    )


@router.get("/threats", response_model=ThreatPage, responses=responses(401, 403, 422, 429, 503))
async def list_threats(
    database: DatabaseDep,
    severity: Annotated[ThreatSeverity | None, Query(description="Exactly this severity.")] = None,
    min_severity: Annotated[ThreatSeverity | None, Query(description="This severity or higher.")] = None,
    category: ThreatCategory | None = None,
    # The pattern refuses NUL (which PostgreSQL cannot compare with) with a 422 naming the parameter.
    antigen: Annotated[str | None, Query(max_length=255, pattern=STORABLE_TEXT_PATTERN)] = None,
    host_id: Annotated[str | None, Query(max_length=255, pattern=STORABLE_TEXT_PATTERN)] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Stored at or after (RFC 3339).",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ThreatPage:
    where = ThreatFilter(
        severity=severity,
        min_severity_rank=SEVERITY_RANK[min_severity] if min_severity is not None else None,
        category=category,
        antigen=antigen,
        host_id=host_id,
        stored_since=_parse_since(since) if since is not None else None,
        before_seq=int(cursor) if cursor is not None else None,
    )
    # One row past the page tells whether an older page exists.
    rows = await queries.page(database, where, limit + 1)
    items = [_stored(dict(r)) for r in rows[:limit]]
    next_cursor = str(items[-1].seq) if len(rows) > limit and items else None
    return ThreatPage(items=items, next_cursor=next_cursor)


@router.get(
    "/threats/{threat_id}", response_model=StoredThreat, responses=responses(401, 403, 404, 422, 429, 503)
)
async def get_threat(threat_id: UUID, database: DatabaseDep) -> StoredThreat:
    row = await queries.by_id(database, str(threat_id))
    if row is None:
        raise ApiError(404, "not_found", "no such threat")
    return _stored(dict(row))
