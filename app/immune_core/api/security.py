"""Bearer-token authentication and per-token rate limiting.

Tokens are compared in constant time against every configured token (no early exit on the first
match), and failures say only "unauthorized"/"forbidden": nothing about which part was wrong.
Missing or malformed ``Authorization`` -> 401; a well-formed token that is not accepted -> 403.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from immune_core.api.errors import ApiError
from immune_core.observability.metrics import Metrics

bearer_scheme = HTTPBearer(auto_error=False, description="One of the tokens in IMMUNE_API_TOKENS.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token fingerprint (never the token) used for rate limits and logs."""

    fingerprint: str


def token_matches(candidate: str, tokens: tuple[str, ...]) -> bool:
    matched = False
    encoded = candidate.encode()
    for token in tokens:
        matched |= hmac.compare_digest(encoded, token.encode())
    return matched


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def authenticate(token: str | None, tokens: tuple[str, ...]) -> Principal:
    if not token:
        raise ApiError(401, "unauthorized", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    if not tokens or not token_matches(token, tokens):
        raise ApiError(403, "forbidden", "forbidden")
    return Principal(fingerprint(token))


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
        raise ApiError(
            429, "rate_limited", "rate limit exceeded", headers={"Retry-After": str(max(1, math.ceil(wait)))}
        )
    return principal


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Principal:
    runtime = request.app.state.runtime
    principal = authenticate(
        credentials.credentials if credentials else None, runtime.settings.token_values()
    )
    return _enforce(principal, request.app.state.limiter, runtime.metrics)


def websocket_token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return websocket.query_params.get("token") or None
