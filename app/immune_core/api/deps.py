"""Request-scoped access to the process's runtime, and the narrow parts routers depend on.

A router names only what it uses (``DatabaseDep``, ``EngineDep``, ``HubDep``, ``IntakeDep``,
``SettingsDep``), as the
full-stack-fastapi-template's ``SessionDep`` does; ``RuntimeDep`` stays for endpoints that need several
parts at once (the runtime's counters and start time, the lease and elector).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from immune_core.ingestion.intake import EventIntake
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


DatabaseDep = Annotated[Database, Depends(database_of)]
EngineDep = Annotated[EngineHost, Depends(engine_of)]
HubDep = Annotated[StreamHub, Depends(hub_of)]
IntakeDep = Annotated[EventIntake, Depends(intake_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
