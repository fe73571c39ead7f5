"""The ASGI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from immune_core.agents.router import router as agents_router
from immune_core.api import health
from immune_core.api.errors import UnhandledErrors, install_error_handlers
from immune_core.api.middleware import (
    BodySizeLimit,
    FaultInjection,
    ForegroundRequests,
    IdentityHeaders,
    RequestMetrics,
)
from immune_core.api.security import AuthFailureLimiter, TokenBucketLimiter
from immune_core.coordination.router import router as coordination_router
from immune_core.events.models import Event
from immune_core.homeostasis.router import router as homeostasis_router
from immune_core.ingestion.router import document_batch_bounds
from immune_core.ingestion.router import router as events_router
from immune_core.lymphnodes.router import router as lymphnodes_router
from immune_core.memory.router import router as memory_router
from immune_core.observability.logging import configure_logging
from immune_core.responses.router import router as responses_router
from immune_core.runtime import Runtime
from immune_core.settings import Settings
from immune_core.stream.router import router as stream_router
from immune_core.threats.router import router as threats_router

API_V1 = "/api/v1"


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_V1)
    for router in (
        events_router,
        threats_router,
        agents_router,
        lymphnodes_router,
        homeostasis_router,
        memory_router,
        responses_router,
        coordination_router,
    ):
        api.include_router(router)
    return api


def create_app(
    settings: Settings | None = None, *, configure_logs: bool = True, tune_gc: bool = False
) -> FastAPI:
    """The service as an ASGI app. ``tune_gc``: only for the process that owns the interpreter
    (``immune-core serve``): freezes the boot heap and raises the GC threshold once booted."""
    settings = settings or Settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)
    runtime = Runtime(settings, tune_gc=tune_gc)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    prefix = settings.api_prefix
    app = FastAPI(
        title="Active Immune Core",
        version=settings.version,
        description="Bio-inspired threat detection: innate immune cells over network, endpoint and intel "
        "events.",
        lifespan=lifespan,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.limiter = TokenBucketLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.auth_failures = AuthFailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_s)

    app.include_router(_api_router(), prefix=prefix)
    app.include_router(stream_router, prefix=prefix)
    app.include_router(health.router, prefix=prefix)
    if prefix:
        # Probes and scrapers reach the pod directly, without the gateway's prefix.
        app.include_router(health.router, include_in_schema=False)
    install_error_handlers(app, settings.retry_after_s)
    _install_openapi(app, settings)

    # Outermost first in the request path: identity headers wrap everything, including 413/500s below.
    app.add_middleware(
        FaultInjection,
        path_prefix=f"{prefix}{API_V1}/",
        latency_ms=settings.fault_latency_ms,
        error_ratio=settings.fault_error_ratio,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(RequestMetrics, metrics=runtime.metrics)
    # Unhandled exceptions become a 500 inside IdentityHeaders (see errors.UnhandledErrors): the
    # routes' are caught by the one install_error_handlers added, our middlewares' by this one.
    app.add_middleware(UnhandledErrors, retry_after_s=settings.retry_after_s)
    app.add_middleware(
        IdentityHeaders,
        color=settings.deployment_color,
        version=settings.version,
        instance_id=settings.instance_id,
    )
    # Outermost: a request counts as in flight (detection gives way to it) from its first byte to its last.
    app.add_middleware(ForegroundRequests, foreground=runtime.foreground)
    return app


def _install_openapi(app: FastAPI, settings: Settings) -> None:
    """Add the event schemas (the request body is read raw so errors name each event's fields)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        event_schema = TypeAdapter(Event).json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(event_schema.pop("$defs", {}))
        components["Event"] = event_schema
        document_batch_bounds(schema, f"{settings.api_prefix}{API_V1}/events", settings.max_batch_events)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
