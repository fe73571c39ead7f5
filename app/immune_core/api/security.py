"""Bearer-token authentication, role checks, per-token rate limiting and failed-login throttling.

Tokens carry roles (``immune_core.api.tokens``): every route names the role it needs through
``require_role``. Answers:

- missing or malformed ``Authorization`` -> 401 (not counted as a failed login: nothing was guessed);
- a token that is not configured -> 403 ``forbidden`` (says nothing about what was wrong) and one more
  failure counted against the client address;
- a client address with ``auth_failure_limit`` failures within ``auth_failure_window_s`` -> 429 with
  ``Retry-After`` for every request it authenticates until the window lets one failure go, valid token
  or not (a guesser learns nothing while blocked);
- a configured token without the role -> 403 ``insufficient_role`` naming the role that is missing;
- more than the per-token rate -> 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from immune_core.api.errors import ApiError
from immune_core.api.tokens import Role, TokenRegistry, grants
from immune_core.observability.metrics import Metrics

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A token of IMMUNE_API_TOKENS; each operation needs one role (see docs/service.md).",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token fingerprint (never the token) for rate limits and logs, and its roles."""

    fingerprint: str
    roles: frozenset[Role] = frozenset()

    def has(self, role: Role) -> bool:
        return grants(self.roles, role)


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class AuthFailureLimiter:
    """At most ``limit`` failed authentications per client address in any ``window_s`` seconds.

    A moving window (the ``limits`` library's ``MovingWindowRateLimiter``, in-process memory): each
    replica counts its own failures, so N replicas behind one balancer allow up to N x ``limit``.
    """

    def __init__(self, limit: int, window_s: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._item = RateLimitItemPerSecond(limit, window_s)

    def blocked_for(self, address: str) -> float:
        """0 when ``address`` may try to authenticate, else seconds until it may."""
        if self._limiter.test(self._item, address):
            return 0.0
        reset_at, _remaining = self._limiter.get_window_stats(self._item, address)
        return max(1.0, reset_at - time.time())

    def record_failure(self, address: str) -> None:
        self._limiter.hit(self._item, address)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def authenticate(
    token: str | None,
    registry: TokenRegistry,
    *,
    failures: AuthFailureLimiter | None = None,
    address: str = "unknown",
    metrics: Metrics | None = None,
) -> Principal:
    """The principal behind ``token``; raises ``ApiError`` 401/403/429 as the module docstring says."""
    if not token:
        raise ApiError(401, "unauthorized", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    if failures is not None:
        wait = failures.blocked_for(address)
        if wait > 0:
            if metrics is not None:
                metrics.rate_limited.inc()
            raise ApiError(
                429,
                "too_many_failed_logins",
                "too many failed authentications from this address; retry later",
                headers=_retry_after(wait),
            )
    roles = registry.roles_of(token) if len(registry) else None
    if roles is None:
        if failures is not None:
            failures.record_failure(address)
        if metrics is not None:
            metrics.auth_failures.labels(reason="unknown_token").inc()
        raise ApiError(403, "forbidden", "forbidden")
    return Principal(fingerprint(token), roles)


def authorize(principal: Principal, role: Role, action: str, metrics: Metrics | None = None) -> Principal:
    """403 ``insufficient_role`` unless ``principal`` holds ``role`` (or admin)."""
    if not principal.has(role):
        if metrics is not None:
            metrics.auth_failures.labels(reason="missing_role").inc()
        held = "+".join(sorted(principal.roles)) or "none"
        raise ApiError(
            403,
            "insufficient_role",
            f"{action} needs the '{role}' role (or 'admin'); this token has: {held}",
        )
    return principal


class TokenBucketLimiter:
    """``rate`` requests per second per principal with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def acquire(self, key: str, now: float | None = None) -> float:
        """0 when allowed, else seconds until a request would be allowed."""
        if self._rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate


def _enforce(principal: Principal, limiter: TokenBucketLimiter, metrics: Metrics) -> Principal:
    wait = limiter.acquire(principal.fingerprint)
    if wait > 0:
        metrics.rate_limited.inc()
        raise ApiError(429, "rate_limited", "rate limit exceeded", headers=_retry_after(wait))
    return principal


def client_address(connection: Request | WebSocket) -> str:
    """The peer address (uvicorn already resolved X-Forwarded-For from trusted proxies into it)."""
    return connection.client.host if connection.client else "unknown"


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Principal:
    """Any configured token, whatever its roles (rate limited per token)."""
    runtime = request.app.state.runtime
    principal = authenticate(
        credentials.credentials if credentials else None,
        runtime.settings.token_registry,
        failures=request.app.state.auth_failures,
        address=client_address(request),
        metrics=runtime.metrics,
    )
    return _enforce(principal, request.app.state.limiter, runtime.metrics)


PrincipalDependency = Callable[..., Awaitable[Principal]]


def require_role(role: Role) -> PrincipalDependency:
    """A dependency that authenticates and then requires ``role`` (admin passes every check)."""

    async def dependency(
        principal: Annotated[Principal, Depends(require_token)], request: Request
    ) -> Principal:
        action = f"{request.method} {request.url.path}"
        return authorize(principal, role, action, request.app.state.runtime.metrics)

    dependency.__name__ = f"require_{role}"
    return dependency


require_read = require_role("read")
require_ingest = require_role("ingest")
require_operate = require_role("operate")
require_admin = require_role("admin")


def authenticate_websocket(websocket: WebSocket, token: str | None, role: Role) -> Principal:
    """``authenticate`` + ``authorize`` for a WebSocket handshake (the caller closes with 1008 on error).

    ``token`` comes from the ``Authorization`` or ``Sec-WebSocket-Protocol`` header (stream router).
    """
    app_state = websocket.app.state
    principal = authenticate(
        token,
        app_state.runtime.settings.token_registry,
        failures=app_state.auth_failures,
        address=client_address(websocket),
        metrics=app_state.runtime.metrics,
    )
    return authorize(principal, role, "the /ws/stream WebSocket", app_state.runtime.metrics)
