"""Pure ASGI middleware (no per-request BaseHTTPMiddleware overhead, works for streaming bodies)."""

from __future__ import annotations

import asyncio
import json
import random
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from immune_core.observability.metrics import Metrics
from immune_core.processing.foreground import Foreground


async def _send_error(
    send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class IdentityHeaders:
    """``X-Immune-Color`` and ``X-Immune-Version`` on every response (canary analysis splits by them)."""

    def __init__(self, app: ASGIApp, *, color: str, version: str, instance_id: str) -> None:
        self.app = app
        self._headers = [
            (b"x-immune-color", color.encode()),
            (b"x-immune-version", version.encode()),
            (b"x-immune-instance", instance_id.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ForegroundRequests:
    """Counts HTTP requests in flight (not WebSockets) in ``Foreground``: detection gives way to them."""

    def __init__(self, app: ASGIApp, *, foreground: Foreground) -> None:
        self.app = app
        self._foreground = foreground

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._foreground.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self._foreground.leave()


class RequestMetrics:
    """Latency histogram by route template (bounded cardinality), method and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or "unmatched"
            self._metrics.http_latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


class BodySizeLimit:
    """Reads each request's body before the route sees it, bounded in size and in time.

    Over ``max_bytes``: 413, by Content-Length up front or while a chunked body streams in. A body that
    does not arrive within ``timeout_s`` (a client that declared 100 bytes and sent 5, a slow-loris):
    408 and the connection closed (RFC 9110 §15.5.9). Reading here, rather than failing the route's own
    ``receive``, keeps those answers out of the routes' error handling: FastAPI turns a failed body read
    into a 400 "error parsing the body", our routes' catch-all into a 500. The route then gets the whole
    body in one message; later ``receive`` calls reach the server (disconnects).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self._max = max_bytes
        self._timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            await self._too_large(send)
            return
        try:
            async with asyncio.timeout(self._timeout_s):  # no task per request, unlike wait_for
                first = await self._read_body(receive)
        except _BodyTooLarge:
            await self._too_large(send)
            return
        except TimeoutError:
            message = f"the request body did not arrive within {self._timeout_s:g} s"
            await _send_error(send, 408, "request_timeout", message, [(b"connection", b"close")])
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _send_error(send, 413, "payload_too_large", f"body exceeds {self._max} bytes", [])

    async def _read_body(self, receive: Receive) -> Message:
        """The body as one ``http.request`` message (or the ``http.disconnect`` that cut it short)."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self._max:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


class _BodyTooLarge(Exception):
    pass


class FaultInjection:
    """Canary-test faults on ``<prefix>/api/v1/*`` only: added latency and a ratio of 500s (off = 0)."""

    def __init__(self, app: ASGIApp, *, path_prefix: str, latency_ms: float, error_ratio: float) -> None:
        self.app = app
        self._prefix = path_prefix
        self._latency_s = latency_ms / 1000.0
        self._ratio = error_ratio

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        # Not security-relevant randomness: it only decides which requests get an injected fault.
        if self._ratio > 0 and random.random() < self._ratio:  # noqa: S311  # nosec B311
            extra: list[tuple[bytes, bytes]] = [(b"x-immune-fault", b"injected")]
            await _send_error(send, 500, "injected_fault", "fault injected for testing", extra)
            return
        await self.app(scope, receive, send)
