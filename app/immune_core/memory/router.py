"""``GET /api/v1/memory``: known signatures (stored) and the live intel this replica's macrophages use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from immune_core.api.deps import DatabaseDep, EngineDep
from immune_core.api.errors import responses
from immune_core.api.security import require_read
from immune_core.detection.threat import SEVERITIES, ThreatCategory
from immune_core.memory import queries

router = APIRouter(tags=["memory"], dependencies=[Depends(require_read)])


class Signature(BaseModel):
    signature: str
    category: str
    antigen_type: str
    antigen: str
    first_seen: float
    last_seen: float
    occurrences: int
    max_severity: str


class IntelIndicator(BaseModel):
    indicator_type: str
    indicator: str
    severity: str
    source: str
    expires_at: str


class MemoryResponse(BaseModel):
    signatures: list[Signature]
    total_signatures: int
    live_intel: list[IntelIndicator]


@router.get("/memory", response_model=MemoryResponse, responses=responses(401, 403, 422, 429, 503))
async def memory(
    database: DatabaseDep,
    engine: EngineDep,
    category: ThreatCategory | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> MemoryResponse:
    rows, total = await queries.signatures(database, category=category, limit=limit, offset=offset)
    signatures = [
        Signature(
            signature=r["signature"],
            category=r["category"],
            antigen_type=r["antigen_type"],
            antigen=r["antigen"],
            first_seen=float(r["first_seen"]),
            last_seen=float(r["last_seen"]),
            occurrences=int(r["occurrences"]),
            max_severity=SEVERITIES[int(r["max_severity_rank"])],
        )
        for r in rows
    ]
    intel = [
        IntelIndicator(
            indicator_type=i.indicator_type,
            indicator=i.indicator,
            severity=i.severity,
            source=i.source,
            expires_at=i.expires_at.isoformat(),
        )
        for i in engine.known_intel()[:1000]
    ]
    return MemoryResponse(signatures=signatures, total_signatures=total, live_intel=intel)
