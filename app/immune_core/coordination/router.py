"""``GET /api/v1/coordination``: who leads, under which term (fencing token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from immune_core.api.deps import ElectorDep, LeaseDep, SettingsDep
from immune_core.api.errors import responses
from immune_core.api.security import require_read

router = APIRouter(tags=["coordination"], dependencies=[Depends(require_read)])


class CoordinationResponse(BaseModel):
    leader: str | None = Field(
        description="instance_id of the current lease holder (null: none yet/expired)."
    )
    term: int | None = Field(description="Fencing token of the current lease; grows with every new leader.")
    is_leader: bool
    instance_id: str
    holder: str | None = Field(description="Lease holder id (instance_id/process nonce).")
    lease_expires_in_s: float | None


@router.get("/coordination", response_model=CoordinationResponse, responses=responses(401, 403, 429, 503))
async def coordination(lease: LeaseDep, elector: ElectorDep, settings: SettingsDep) -> CoordinationResponse:
    state = await lease.current()
    live = state is not None and state.expires_in_s > 0
    return CoordinationResponse(
        leader=state.holder.split("/", 1)[0] if state is not None and live else None,
        term=state.token if state is not None else None,
        is_leader=elector.is_leader,
        instance_id=settings.instance_id,
        holder=state.holder if state is not None else None,
        lease_expires_in_s=round(state.expires_in_s, 3) if state is not None else None,
    )
