"""Request-scoped access to the process's runtime, and the narrow parts routers depend on.

A router names only what it uses (``DatabaseDep``, ``EngineDep``, ``HubDep``, ``IntakeDep``,
``SettingsDep``, ``CountersDep``, ``LeaseDep``, ``ElectorDep``, ``HormoneStateDep``, ``UptimeDep``), as the
full-stack-fastapi-template's ``SessionDep`` does; ``RuntimeDep`` stays for the health endpoints, whose
readiness is a judgement over every part of the runtime.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from immune_core.coordination.leader import LeaderElector
from immune_core.coordination.lease import DatabaseLease
from immune_core.ingestion.intake import EventIntake
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.runtime import Runtime
from immune_core.settings import Settings
from immune_core.storage.database import Database
from immune_core.stream.hub import StreamHub


async def runtime_of(connection: HTTPConnection) -> Runtime:
    # async: FastAPI would run a plain function in a worker thread, one thread hop per request.
    # HTTPConnection, not Request: the same dependency serves HTTP routes and the WebSocket route.
    runtime: Runtime = connection.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


async def database_of(runtime: RuntimeDep) -> Database:
    return runtime.database


async def engine_of(runtime: RuntimeDep) -> EngineHost:
    return runtime.engine


async def hub_of(runtime: RuntimeDep) -> StreamHub:
    return runtime.hub


async def intake_of(runtime: RuntimeDep) -> EventIntake:
    return runtime.intake


async def settings_of(runtime: RuntimeDep) -> Settings:
    return runtime.settings


async def counters_of(runtime: RuntimeDep) -> IntakeCounters:
    return runtime.counters


async def lease_of(runtime: RuntimeDep) -> DatabaseLease:
    return runtime.lease


async def elector_of(runtime: RuntimeDep) -> LeaderElector:
    return runtime.elector


async def hormone_state_of(runtime: RuntimeDep) -> dict[str, Any] | None:
    """The threat-level hormone as this replica last read it (None: not read yet), at request time."""
    return runtime.hormone_state


async def uptime_of(runtime: RuntimeDep) -> float:
    """Seconds since this process's runtime started, at request time."""
    return time.time() - runtime.started_at


DatabaseDep = Annotated[Database, Depends(database_of)]
EngineDep = Annotated[EngineHost, Depends(engine_of)]
HubDep = Annotated[StreamHub, Depends(hub_of)]
IntakeDep = Annotated[EventIntake, Depends(intake_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
CountersDep = Annotated[IntakeCounters, Depends(counters_of)]
LeaseDep = Annotated[DatabaseLease, Depends(lease_of)]
ElectorDep = Annotated[LeaderElector, Depends(elector_of)]
HormoneStateDep = Annotated[dict[str, Any] | None, Depends(hormone_state_of)]
UptimeDep = Annotated[float, Depends(uptime_of)]
