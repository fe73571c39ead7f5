"""``/api/v1/agents``: list, inspect, create, delete and clone cells.

Changes are recorded in the ordered ``agent_ops`` log and applied by every replica in the same order
(see ``processing.engine_host``); this replica applies them before answering, so the answer shows the
cell as it now exists here. Other replicas apply the change within about a second.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from immune_core.api.deps import RuntimeDep
from immune_core.api.errors import ApiError, responses
from immune_core.api.security import require_token
from immune_core.cells.base import Cell, CellConfigError
from immune_core.processing.engine_host import EngineHost
from immune_core.runtime import Runtime

router = APIRouter(tags=["agents"], dependencies=[Depends(require_token)])


class Agent(BaseModel):
    id: str
    type: str
    stage: int
    description: str
    params: dict[str, Any]
    counters: dict[str, int] = Field(description="Summed over this replica's partition engines.")
    state: dict[str, Any]
    lanes: list[str] = Field(description="Input topic/partition lanes this replica runs the cell for.")


class AgentType(BaseModel):
    type: str
    description: str
    params_schema: dict[str, Any]


class AgentList(BaseModel):
    agents: list[Agent]
    types: list[AgentType] = Field(description="Cell types that can be created.")


# Documented as an enum so clients (and schema-driven fuzzers) know the creatable types.
_CELL_TYPES: list[JsonValue] = [*sorted(Cell.types())]


class CreateAgent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(max_length=64, json_schema_extra={"enum": _CELL_TYPES})
    params: dict[str, Any] = Field(default_factory=dict)


def _agent(runtime: Runtime, cell_id: str) -> Agent:
    for described in runtime.engine.describe():
        if described["id"] == cell_id:
            return Agent.model_validate(described)
    raise ApiError(404, "not_found", "no such agent")


async def _record(runtime: Runtime, op: str, **fields: Any) -> int:
    async with runtime.database.transaction() as conn:
        seq = await EngineHost.record_agent_op(conn, runtime.database.lock_table, op, **fields)
    await runtime.engine.sync_agents()
    error = runtime.engine.op_errors.get(seq)
    if error is not None:
        raise ApiError(409, "agent_op_failed", error)
    return seq


@router.get("/agents", response_model=AgentList, responses=responses(401, 403, 429, 503))
async def list_agents(runtime: RuntimeDep) -> AgentList:
    await runtime.engine.sync_agents()
    types = [
        AgentType(type=name, description=cls.description, params_schema=cls.params_model.model_json_schema())
        for name, cls in Cell.types().items()
    ]
    return AgentList(agents=[Agent.model_validate(d) for d in runtime.engine.describe()], types=types)


@router.get("/agents/{agent_id}", response_model=Agent, responses=responses(401, 403, 404, 429, 503))
async def get_agent(agent_id: str, runtime: RuntimeDep) -> Agent:
    await runtime.engine.sync_agents()
    return _agent(runtime, agent_id)


@router.post(
    "/agents",
    status_code=201,
    response_model=Agent,
    responses=responses(400, 401, 403, 409, 422, 429, 503),
)
async def create_agent(body: CreateAgent, runtime: RuntimeDep) -> Agent:
    try:
        params = Cell.validate_params(body.type, body.params).model_dump(mode="json")
    except CellConfigError as exc:
        raise ApiError(422, "invalid_agent", exc.message, details=exc.errors) from None
    seq = await _record(runtime, "create", cell_type=body.type, params=params)
    return _agent(runtime, runtime.engine.cell_by_op[seq])


@router.post(
    "/agents/{agent_id}/clone",
    status_code=201,
    response_model=Agent,
    summary="Clonal expansion: a copy with the same parameters and learned state",
    responses=responses(401, 403, 404, 409, 429, 503),
)
async def clone_agent(agent_id: str, runtime: RuntimeDep) -> Agent:
    await runtime.engine.sync_agents()
    _agent(runtime, agent_id)  # 404 before recording an op that cannot apply
    seq = await _record(runtime, "clone", target_cell_id=agent_id)
    return _agent(runtime, runtime.engine.cell_by_op[seq])


@router.delete(
    "/agents/{agent_id}",
    status_code=204,
    response_class=Response,
    responses=responses(401, 403, 404, 409, 429, 503),
)
async def delete_agent(agent_id: str, runtime: RuntimeDep) -> Response:
    await runtime.engine.sync_agents()
    _agent(runtime, agent_id)
    await _record(runtime, "delete", target_cell_id=agent_id)
    return Response(status_code=204)
