"""``/api/v1/threats``: list with filters and cursor pagination (newest first), get one."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from immune_core.api.deps import RuntimeDep
from immune_core.api.errors import ApiError, responses
from immune_core.api.security import require_read
from immune_core.detection.threat import SEVERITY_RANK, Threat, ThreatCategory, ThreatSeverity
from immune_core.events.text import STORABLE_TEXT_PATTERN

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
    runtime: RuntimeDep,
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
    clauses: list[str] = []
    args: list[Any] = []

    def where(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${len(args)}"))

    if severity is not None:
        where("severity = ?", severity)
    if min_severity is not None:
        where("severity_rank >= ?", SEVERITY_RANK[min_severity])
    if category is not None:
        where("category = ?", category)
    if antigen is not None:
        where("antigen = ?", antigen)
    if host_id is not None:
        where("host_id = ?", host_id)
    if since is not None:
        where("stored_at >= ?", _parse_since(since))
    if cursor is not None:
        where("seq < ?", int(cursor))
    args.append(limit + 1)
    # Only fixed column conditions with numbered placeholders are joined; values travel as parameters.
    sql = (
        "SELECT seq, stored_at, payload FROM threats"  # noqa: S608  # nosec B608
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + f" ORDER BY seq DESC LIMIT ${len(args)}"
    )
    async with runtime.database.session() as conn:
        rows = await conn.fetch(sql, *args)
    items = [_stored(dict(r)) for r in rows[:limit]]
    next_cursor = str(items[-1].seq) if len(rows) > limit and items else None
    return ThreatPage(items=items, next_cursor=next_cursor)


@router.get(
    "/threats/{threat_id}", response_model=StoredThreat, responses=responses(401, 403, 404, 422, 429, 503)
)
async def get_threat(threat_id: UUID, runtime: RuntimeDep) -> StoredThreat:
    async with runtime.database.session() as conn:
        row = await conn.fetchrow(
            "SELECT seq, stored_at, payload FROM threats WHERE threat_id = $1", str(threat_id)
        )
    if row is None:
        raise ApiError(404, "not_found", "no such threat")
    return _stored(dict(row))
