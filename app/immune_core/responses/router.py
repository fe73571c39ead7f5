"""``GET /api/v1/responses``: the response actions the core proposed and what was decided about each.

Allowed ones were published on ``immunis.responses.proposed``; denied ones carry the reason (the
validator's, the safe default's, or a regulatory T cell's damping). The core never executes them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from immune_core.api.deps import DatabaseDep
from immune_core.api.errors import responses
from immune_core.api.security import require_read
from immune_core.responses import queries
from immune_core.responses.validation import ActionKind, Decision

router = APIRouter(tags=["responses"], dependencies=[Depends(require_read)])


class ResponseDecision(BaseModel):
    action_id: str
    threat_id: str
    kind: ActionKind
    target: str
    critical: bool
    decision: Decision
    reason: str
    validator: str = Field(
        description="Who decided: the validator service, default-policy, or a regulatory T cell."
    )
    degraded: bool = Field(description="The configured validator failed and the safe default decided.")
    decided_at: float = Field(description="Unix seconds.")


class ResponseDecisions(BaseModel):
    decisions: list[ResponseDecision]


@router.get("/responses", response_model=ResponseDecisions, responses=responses(401, 403, 422, 429, 503))
async def list_responses(
    database: DatabaseDep,
    decision: Literal["allow", "deny"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ResponseDecisions:
    rows = await queries.decisions(database, decision=decision, limit=limit)
    return ResponseDecisions(
        decisions=[
            ResponseDecision(
                action_id=str(r["action_id"]),
                threat_id=str(r["threat_id"]),
                kind=r["kind"],
                target=str(r["target"]),
                critical=bool(r["critical"]),
                decision=r["decision"],
                reason=str(r["reason"]),
                validator=str(r["validator"]),
                degraded=bool(r["degraded"]),
                decided_at=float(r["decided_at"]),
            )
            for r in rows
        ]
    )
