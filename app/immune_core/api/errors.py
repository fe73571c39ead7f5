"""One error body for every failure, and the handlers that produce it (no internals leak out)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from immune_core.ingestion.intake import EventsRejected
from immune_core.observability.logging import get_logger
from immune_core.storage.database import StoreUnavailable
from immune_core.storage.postgres import is_unavailable

log = get_logger(__name__)


class ErrorBody(BaseModel):
    error: str = Field(description="Stable machine-readable code, e.g. invalid_event, unauthorized.")
    message: str = Field(description="What went wrong, for a human.")
    details: list[dict[str, Any]] | None = Field(default=None, description="Per-item problems, if any.")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=code, message=message, details=details).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses a route can answer."""
    described = {
        400: "Malformed request",
        401: "Missing or malformed bearer token",
        403: "Token not accepted",
        404: "Not found",
        409: "Conflict",
        413: "Body or batch too large",
        422: "Invalid input (each problem listed)",
        429: "Rate limit exceeded (see Retry-After)",
        503: "Storage unavailable, nothing was stored (see Retry-After)",
    }
    return {s: {"model": ErrorBody, "description": described[s]} for s in statuses}


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods)


def unavailable_response(retry_after_s: int) -> JSONResponse:
    log.warning("request_refused_store_unavailable")
    return error_response(
        503,
        "storage_unavailable",
        "storage is unavailable; nothing was stored, retry later",
        headers={"Retry-After": str(retry_after_s)},
    )


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Handlers for the known errors, and `UnhandledErrors` (a middleware) for every other exception."""
    app.add_middleware(UnhandledErrors, retry_after_s=retry_after_s)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(EventsRejected)
    async def _rejected(_: Request, exc: EventsRejected) -> JSONResponse:
        first = exc.errors[0]["message"] if exc.errors else "invalid event"
        message = first if len(exc.errors) == 1 else f"{len(exc.errors)} invalid events; first: {first}"
        return error_response(422, "invalid_event", message, exc.errors)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return unavailable_response(retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # A body that is not JSON at all is malformed (400), like POST /events says; 422 is for JSON
        # that does not satisfy the schema.
        unreadable = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if unreadable:
            reason = str(unreadable[0].get("ctx", {}).get("error", "") or unreadable[0].get("msg", ""))
            return error_response(400, "malformed_json", f"body is not valid JSON: {reason}".rstrip(": "))
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "reason": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['reason']}" for d in details) or "invalid request"
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette lists only the first route that matched the path; a path has one route per method.
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)


class UnhandledErrors:
    """A 500 ``internal_error`` for any exception no handler took, sent *inside* the identity headers.

    Starlette runs an ``exception_handler(Exception)`` in its ServerErrorMiddleware, the outermost
    layer of the stack, so its 500 bypassed every middleware of ours and left without
    ``X-Immune-Color``: a crashing candidate then looked like nobody's failure. Catching here, below
    ``IdentityHeaders``, gives every 500 the same identity as any other response. When the response
    had already started, nothing can be sent any more: the exception goes on to the server, which
    closes the connection (the client sees a reset, attributed by the ingress).
    """

    def __init__(self, app: ASGIApp, *, retry_after_s: int) -> None:
        self.app = app
        self._retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                log.exception("unhandled_error", error_type=type(exc).__name__)
                raise
            if is_unavailable(exc):
                # A database outage that reached here without passing the store's wrapper (classified
                # by exception class, like every other): still "unavailable, retry", never a 500.
                response = unavailable_response(self._retry_after_s)
            else:
                log.exception("unhandled_error", error_type=type(exc).__name__)
                response = error_response(500, "internal_error", "internal error")
            await response(scope, receive, send)
