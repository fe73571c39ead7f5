"""``/api/v1/agents``: list, inspect, create, delete and clone cells.

Reading needs the ``read`` role; changing the population needs ``operate``, and removing the last cell of
a type detection depends on needs ``admin`` and ``?force=true``. The population is capped
(``IMMUNE_MAX_CELLS``, ``IMMUNE_MAX_CELLS_PER_TYPE``: 409 ``population_full``) and every cell parameter
is bounded (422, bounds in each type's ``params_schema`` and docs/detection.md).

Changes are recorded in the ordered ``agent_ops`` log and applied by every replica in the same order
(see ``processing.engine_host``); this replica applies them before answering, so the answer shows the
cell as it now exists here. Other replicas apply the change within about a second.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from immune_core.agents import queries
from immune_core.api.deps import DatabaseDep, EngineDep
from immune_core.api.errors import ApiError, responses
from immune_core.api.security import Principal, authorize, require_operate, require_read
from immune_core.cells.base import Cell, CellConfigError, PopulationError
from immune_core.processing.engine_host import EngineHost
from immune_core.storage.database import Database

router = APIRouter(tags=["agents"])

# Cell ids are `<cell type>-<number>` (detection.engine): bounded so that a hostile id (NUL, 10 kB)
# is a 422 naming the parameter before it reaches the engine or the `agent_ops` log, and the bound
# is stated in the OpenAPI document. Cell types are registered names of letters, digits and `_`.
AGENT_ID_MAX_LENGTH = 128
AgentId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=AGENT_ID_MAX_LENGTH,
        pattern=r"^[A-Za-z0-9_]{1,100}-[0-9]{1,18}$",
        description="A cell id as listed by `GET /api/v1/agents`, e.g. `neutrophil-1`.",
    ),
]


class Agent(BaseModel):
    id: str
    lineage: str = Field(
        description="Id of the cell this one was cloned from (its own id when created, not cloned): "
        "findings of one lineage count once in a threat's confidence."
    )
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


def _create_body_schema() -> dict[str, Any]:
    """The request body as documented: one alternative per cell type, each with its params' bounds.

    The handler still parses ``CreateAgent`` and validates ``params`` per type itself, so that a 422
    names each offending parameter; the document states every bound the server enforces.
    """
    alternatives = []
    for name, cls in Cell.types().items():
        params_schema = cls.params_model.model_json_schema()
        params_schema.pop("title", None)
        alternatives.append(
            {
                "type": "object",
                "title": f"Create {name}",
                "required": ["type"],
                "properties": {"type": {"type": "string", "const": name}, "params": params_schema},
                "additionalProperties": False,
            }
        )
    return {"oneOf": alternatives}


def _agent(engine: EngineHost, cell_id: str) -> Agent:
    for described in engine.describe():
        if described["id"] == cell_id:
            return Agent.model_validate(described)
    raise ApiError(404, "not_found", "no such agent")


def _refuse(exc: PopulationError) -> ApiError:
    return ApiError(409, exc.code, exc.message)


async def _record(engine: EngineHost, database: Database, op: str, **fields: Any) -> int:
    seq = await queries.record_agent_op(database, op, **fields)
    await engine.sync_agents()
    error = engine.op_errors.get(seq)
    if error is not None:
        raise ApiError(409, "agent_op_failed", error)
    return seq


@router.get(
    "/agents",
    response_model=AgentList,
    responses=responses(401, 403, 429, 503),
    dependencies=[Depends(require_read)],
)
async def list_agents(engine: EngineDep) -> AgentList:
    await engine.sync_agents()
    types = [
        AgentType(type=name, description=cls.description, params_schema=cls.params_model.model_json_schema())
        for name, cls in Cell.types().items()
    ]
    return AgentList(agents=[Agent.model_validate(d) for d in engine.describe()], types=types)


@router.get(
    "/agents/{agent_id}",
    response_model=Agent,
    responses=responses(401, 403, 404, 422, 429, 503),
    dependencies=[Depends(require_read)],
)
async def get_agent(agent_id: AgentId, engine: EngineDep) -> Agent:
    await engine.sync_agents()
    return _agent(engine, agent_id)


@router.post(
    "/agents",
    status_code=201,
    response_model=Agent,
    responses=responses(400, 401, 403, 409, 422, 429, 503),
    dependencies=[Depends(require_operate)],
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _create_body_schema()}}}
    },
)
async def create_agent(body: CreateAgent, engine: EngineDep, database: DatabaseDep) -> Agent:
    try:
        params = Cell.validate_params(body.type, body.params).model_dump(mode="json")
    except CellConfigError as exc:
        raise ApiError(422, "invalid_agent", exc.message, details=exc.errors) from None
    await engine.sync_agents()
    try:
        engine.template.check_room_for(body.type)
    except PopulationError as exc:
        raise _refuse(exc) from None
    seq = await _record(engine, database, "create", cell_type=body.type, params=params)
    return _agent(engine, engine.cell_by_op[seq])


@router.post(
    "/agents/{agent_id}/clone",
    status_code=201,
    response_model=Agent,
    summary="Clonal expansion: a copy with the same parameters and learned state",
    responses=responses(401, 403, 404, 409, 422, 429, 503),
    dependencies=[Depends(require_operate)],
)
async def clone_agent(agent_id: AgentId, engine: EngineDep, database: DatabaseDep) -> Agent:
    await engine.sync_agents()
    original = _agent(engine, agent_id)  # 404 before recording an op that cannot apply
    try:
        engine.template.check_room_for(original.type)
    except PopulationError as exc:
        raise _refuse(exc) from None
    seq = await _record(engine, database, "clone", target_cell_id=agent_id)
    return _agent(engine, engine.cell_by_op[seq])


@router.delete(
    "/agents/{agent_id}",
    status_code=204,
    response_class=Response,
    responses=responses(401, 403, 404, 409, 422, 429, 503),
)
async def delete_agent(
    agent_id: AgentId,
    engine: EngineDep,
    database: DatabaseDep,
    principal: Annotated[Principal, Depends(require_operate)],
    force: Annotated[
        bool,
        Query(
            description="Remove even the last cell of a type detection depends on (admin only); the "
            "service then reports itself not ready until a cell of that type exists again."
        ),
    ] = False,
) -> Response:
    if force:
        authorize(principal, "admin", "removing a cell with force=true")
    await engine.sync_agents()
    _agent(engine, agent_id)
    try:
        engine.template.check_removable(agent_id, force=force)
    except PopulationError as exc:
        raise _refuse(exc) from None
    await _record(
        engine, database, "delete", target_cell_id=agent_id, params={"force": True} if force else None
    )
    return Response(status_code=204)
