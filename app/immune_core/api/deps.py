"""Request-scoped access to the process's runtime."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from immune_core.runtime import Runtime


async def runtime_of(request: Request) -> Runtime:
    # async: FastAPI would run a plain function in a worker thread, one thread hop per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
