"""``/api/v1/homeostasis``: the threat level (role ``read``), and an operator override (role ``operate``)."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from immune_core.api.deps import DatabaseDep, HormoneStateDep
from immune_core.api.errors import responses
from immune_core.api.security import require_operate, require_read
from immune_core.events.text import STORABLE_TEXT_PATTERN, check_storable
from immune_core.homeostasis.levels import LEVEL_NAMES, parse_level
from immune_core.homeostasis.queries import current_state, set_override

router = APIRouter(tags=["homeostasis"])


class OverrideOut(BaseModel):
    level: int
    until: float | None
    reason: str | None


class HomeostasisResponse(BaseModel):
    level: int = Field(description=f"0-3: {', '.join(LEVEL_NAMES)}")
    level_name: str
    score: float
    source: str = Field(description="computed or override")
    updated_at: float | None
    term: int | None = Field(description="Fencing token of the leader that wrote this state.")
    override: OverrideOut | None
    hormone: dict[str, Any] | None = Field(description="Last threat-level hormone this replica received.")


LevelValue = Literal[0, 1, 2, 3, "baseline", "elevated", "high", "critical"]


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: LevelValue = Field(description=f"0-3 or one of {', '.join(LEVEL_NAMES)}")
    duration_s: float = Field(300.0, gt=0, le=86_400, strict=True)
    reason: str | None = Field(None, max_length=500, json_schema_extra={"pattern": STORABLE_TEXT_PATTERN})

    @field_validator("level", mode="before")
    @classmethod
    def _no_booleans(cls, value: object) -> object:
        # JSON true/false would otherwise pass as the literals 1/0.
        if isinstance(value, bool):
            raise ValueError("level must be 0-3 or a level name, not a boolean")
        return value

    @field_validator("reason")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return None if value is None else check_storable(value)


@router.get(
    "/homeostasis",
    response_model=HomeostasisResponse,
    responses=responses(401, 403, 429, 503),
    dependencies=[Depends(require_read)],
)
async def homeostasis(database: DatabaseDep, hormone: HormoneStateDep) -> HomeostasisResponse:
    state = await current_state(database)
    if state is None:
        return HomeostasisResponse(
            level=0,
            level_name=LEVEL_NAMES[0],
            score=0.0,
            source="computed",
            updated_at=None,
            term=None,
            override=None,
            hormone=hormone,
        )
    return HomeostasisResponse.model_validate({**state.as_dict(time.time()), "hormone": hormone})


@router.put(
    "/homeostasis/override",
    status_code=204,
    response_class=Response,
    summary="Force the threat level for a while (applied by the leader within a tick)",
    responses=responses(400, 401, 403, 422, 429, 503),
    dependencies=[Depends(require_operate)],
)
async def override(body: OverrideRequest, database: DatabaseDep) -> Response:
    await set_override(database, parse_level(body.level), body.duration_s, body.reason)
    return Response(status_code=204)


@router.delete(
    "/homeostasis/override",
    status_code=204,
    response_class=Response,
    summary="Return to the computed level",
    responses=responses(401, 403, 429, 503),
    dependencies=[Depends(require_operate)],
)
async def clear_override(database: DatabaseDep) -> Response:
    await set_override(database, None, 0.0, None)
    return Response(status_code=204)
