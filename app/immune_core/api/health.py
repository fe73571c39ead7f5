"""Liveness, readiness and metrics: unauthenticated, served at the root and under the prefix."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from immune_core.api.deps import RuntimeDep

router = APIRouter(tags=["health"])
DependencyState = Literal["ok", "degraded", "down"]
ExternalState = Literal["up", "degraded", "open_circuit", "unknown", "not_configured"]


class LiveResponse(BaseModel):
    status: Literal["ok"]
    version: str
    instance_id: str
    color: str


class Dependencies(BaseModel):
    database: DependencyState
    redis: DependencyState
    kafka: DependencyState
    consumer: Literal["starting", "ok", "stuck", "crash_looping"] = Field(
        default="ok",
        description="Detection consumer; stuck (backlog, no commit) or crash_looping: not ready",
    )


class ReadyResponse(BaseModel):
    ready: bool
    dependencies: Dependencies
    instance_id: str
    missing_cell_types: list[str] = Field(
        default_factory=list,
        description="Cell types detection depends on that have no cell: not ready while not empty.",
    )
    reasons: list[str] = Field(
        default_factory=list, description="Why the replica is not ready, if it is not."
    )
    services: dict[str, ExternalState] = Field(
        default_factory=dict,
        description="Optional external services (rte, ip_intel, ...): up, degraded (last call failed or "
        "circuit half-open), open_circuit (calls fail fast), unknown (not called yet) or not_configured. "
        "They never make the replica unready: without one the core takes its fallback.",
    )


@router.get("/health/live", response_model=LiveResponse, summary="The process is up")
async def live(runtime: RuntimeDep) -> LiveResponse:
    s = runtime.settings
    return LiveResponse(status="ok", version=s.version, instance_id=s.instance_id, color=s.deployment_color)


@router.get(
    "/health/ready",
    response_model=ReadyResponse,
    summary="Able to accept and store events, and to detect",
    responses={
        503: {
            "model": ReadyResponse,
            "description": "Not ready: database down, still booting, or a cell population that cannot detect",
        }
    },
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    is_ready, dependencies = await runtime.readiness()
    reasons = [] if is_ready else not_ready_reasons(dependencies, booted=runtime.booted.is_set())
    # The population is the one every replica applies from the agent_ops log (synced every second);
    # one without, say, neutrophils stores events that no cell will ever flag as a scan.
    missing = runtime.engine.template.missing_types()
    if missing:
        is_ready = False
        reasons.append(
            f"no {', '.join(missing)} cell: detection depends on each; create one (POST /api/v1/agents)"
        )
    body = ReadyResponse(
        ready=is_ready,
        dependencies=Dependencies.model_validate(dependencies),
        instance_id=runtime.settings.instance_id,
        missing_cell_types=missing,
        reasons=reasons,
        services=await runtime.external.states(),
    )
    headers = None if is_ready else {"Retry-After": str(runtime.settings.retry_after_s)}
    return JSONResponse(body.model_dump(), status_code=200 if is_ready else 503, headers=headers)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def not_ready_reasons(dependencies: dict[str, str], *, booted: bool) -> list[str]:
    """Why `Runtime.readiness()` said no, one reason per failed condition, in the probe's own words."""
    reasons = []
    if dependencies.get("database") != "ok":
        reasons.append("database down (no answer to a ping within the readiness bound)")
    if not booted:
        reasons.append("still booting (replay and detection state)")
    consumer = dependencies.get("consumer")
    if consumer not in ("ok", "starting"):
        reasons.append(f"detection consumer {consumer}: accepted events are not being processed")
    return reasons or ["not ready"]
