"""``/api/v1/lymphnodes``: regional aggregation written by the leader's coordinator."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from immune_core.api.deps import DatabaseDep
from immune_core.api.errors import ApiError, responses
from immune_core.api.security import require_read
from immune_core.detection.threat import SEVERITIES
from immune_core.lymphnodes import queries

router = APIRouter(tags=["lymphnodes"], dependencies=[Depends(require_read)])


class LymphNode(BaseModel):
    node_id: str
    activated: bool
    threat_count: int
    max_severity: str | None
    categories: dict[str, int]
    antigens: list[str]
    cytokines: dict[str, int]
    window_s: float
    updated_at: float
    term: int


def _node(row: dict[str, Any]) -> LymphNode:
    payload = json.loads(row["payload"])
    rank = int(row["max_severity_rank"])
    return LymphNode(
        node_id=row["node_id"],
        activated=bool(row["activated"]),
        threat_count=int(row["threat_count"]),
        max_severity=SEVERITIES[rank] if rank >= 0 else None,
        categories=payload.get("categories", {}),
        antigens=payload.get("antigens", []),
        cytokines=payload.get("cytokines", {}),
        window_s=float(payload.get("window_s", 0)),
        updated_at=float(row["updated_at"]),
        term=int(row["token"]),
    )


@router.get("/lymphnodes", response_model=list[LymphNode], responses=responses(401, 403, 429, 503))
async def lymphnodes(database: DatabaseDep) -> list[LymphNode]:
    rows = await queries.all_nodes(database)
    return [_node(dict(r)) for r in rows]


# Node ids are regions (regions.py): `net:<CIDR>` (hence the `/` and the `:path` route) or `hosts:<role>`.
NodeId = Annotated[
    str,
    Path(
        pattern=r"^(net|hosts):[A-Za-z0-9._:/-]{1,120}$",
        description="A region, e.g. `net:10.0.1.0/24` or `hosts:web`",
    ),
]


@router.get(
    "/lymphnodes/{node_id:path}", response_model=LymphNode, responses=responses(401, 403, 404, 429, 503)
)
async def lymphnode(node_id: NodeId, database: DatabaseDep) -> LymphNode:
    row = await queries.node(database, node_id)
    if row is None:
        raise ApiError(404, "not_found", "no such lymph node")
    return _node(dict(row))
