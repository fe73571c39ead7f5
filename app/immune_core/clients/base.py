"""What every external-service client shares: timeouts, retries, circuit breaker, bulkhead, contract.

One call (``ServiceClient.call``) is, from the outside in:

1. **retries** (tenacity) only for operations the contract marks ``x-idempotent``, only after a
   transient failure (timeout, connection refused or reset, HTTP 5xx or 429), with "full jitter"
   exponential backoff: a random wait in [0, min(max, initial * 2**attempt)] (Brooker, "Exponential
   Backoff And Jitter", AWS Architecture Blog, 2015), so replicas that failed together do not retry in
   lock-step;
2. a **bulkhead** per service (``asyncio.Semaphore``): at most ``max_concurrency`` calls in flight; a
   call that cannot get a slot within ``bulkhead_wait_s`` fails at once (``bulkhead_full``) instead of
   queueing behind a slow service and holding the event loop's work hostage;
3. a **circuit breaker** per service (purgatory): after ``breaker_threshold`` consecutive failures it
   opens and calls fail fast (``circuit_open``) for ``breaker_reset_s``; the next call then goes through
   half-open, and its success closes the circuit (its failure re-opens it). HTTP 4xx is the caller's
   fault, not the service's, and does not count;
4. the HTTP **exchange** (httpx) bounded by a connect timeout and a total deadline per attempt
   (``asyncio.timeout``: a server that trickles its body cannot stretch an attempt past it);
5. the **contract**: the answer must be a status and a JSON body the service's OpenAPI document declares
   (``contract.Contract``); anything else is a failure of that call (``contract``), counted and seen by
   the breaker.

Every failure surfaces as ``DependencyFailure`` with a ``reason``; the typed clients catch it and take
their named fallback, so no caller of a client ever sees an exception from a dependency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from immune_core.clients.contract import Contract, ContractViolation, Operation
from immune_core.clients.metrics import CIRCUIT_VALUE, ClientMetrics
from immune_core.observability.logging import get_logger

log = get_logger(__name__)

FailureReason = Literal[
    "timeout", "connect", "transport", "http_5xx", "http_4xx", "contract", "circuit_open", "bulkhead_full"
]
_TRANSIENT: frozenset[str] = frozenset({"timeout", "connect", "transport", "http_5xx"})
DependencyState = Literal["up", "degraded", "open_circuit", "unknown"]


class DependencyFailure(Exception):
    """One call to an external service did not produce a valid answer; ``reason`` says why."""

    def __init__(self, service: str, operation: str, reason: FailureReason, detail: str = "") -> None:
        super().__init__(f"{service}.{operation} failed ({reason}){': ' + detail if detail else ''}")
        self.service = service
        self.operation = operation
        self.reason: FailureReason = reason
        self.detail = detail

    @property
    def transient(self) -> bool:
        """True for a failure a retry may cure (timeout, connect, transport, HTTP 5xx or 429)."""
        return self.reason in _TRANSIENT


@dataclass(frozen=True)
class ClientConfig:
    """How one client talks to its service. Times in seconds."""

    base_url: str
    timeout_s: float = 2.0  # total deadline of one attempt
    connect_timeout_s: float = 0.5
    retries: int = 2  # extra attempts, idempotent operations only
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    breaker_threshold: int = 5  # consecutive failures that open the circuit
    breaker_reset_s: float = 30.0  # how long it stays open before a half-open trial call
    max_concurrency: int = 16  # bulkhead
    bulkhead_wait_s: float = 0.05


@dataclass(frozen=True)
class _Request:
    """One call's request, as every attempt of it sends it."""

    op: Operation
    path_params: dict[str, str] | None
    query: dict[str, str] | None
    body: Any
    headers: dict[str, str] | None
    # What a schema cannot say about the answer: a description of what is wrong, or None.
    check: Callable[[Any], str | None] | None


def _not_the_services_fault(exc: BaseException) -> bool:
    return isinstance(exc, DependencyFailure) and exc.reason == "http_4xx"


class ServiceClient:
    """Base of the six clients: ``service`` names the dependency and its contract document."""

    service: ClassVar[str]
    contract_major: ClassVar[int] = 1

    def __init__(
        self,
        config: ClientConfig,
        metrics: ClientMetrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.contract = Contract.load(self.service, self.contract_major)
        self._metrics = metrics
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "active-immune-core", "Accept": "application/json"},
        )
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._in_flight = 0
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=config.breaker_threshold,
            default_ttl=config.breaker_reset_s,
            exclude=[(DependencyFailure, _not_the_services_fault)],
        )
        self._breakers.add_listener(self._on_breaker_event)
        self._last_outcome: Literal["ok", "failed"] | None = None
        metrics.circuit_state.labels(dependency=self.service).set(CIRCUIT_VALUE["closed"])

    # -- the call ----------------------------------------------------------------------------------
    async def call(
        self,
        operation_id: str,
        *,
        path_params: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The decoded, contract-checked JSON answer; raises ``DependencyFailure``.

        ``check`` adds what a schema cannot say (e.g. one answer per item asked about): it returns a
        description of what is wrong, or None, and a wrong answer is a ``contract`` failure like any
        other (counted, seen by the breaker)."""
        op = self.contract.operation(operation_id)
        request = _Request(op, path_params, query, body, headers, check)
        attempts = 1 + (self.config.retries if op.idempotent else 0)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(
                multiplier=self.config.backoff_initial_s, max=self.config.backoff_max_s
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, DependencyFailure) and exc.transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    answer = await self._attempt(request)
        except DependencyFailure as exc:
            self._last_outcome = "failed"
            outcome = "rejected" if exc.reason in ("circuit_open", "bulkhead_full") else "failed"
            self._metrics.calls.labels(dependency=self.service, operation=operation_id, outcome=outcome).inc()
            log.warning(
                "dependency_call_failed",
                dependency=self.service,
                operation=operation_id,
                reason=exc.reason,
                detail=exc.detail[:300],
            )
            raise
        self._last_outcome = "ok"
        self._metrics.calls.labels(dependency=self.service, operation=operation_id, outcome="ok").inc()
        return answer

    async def _attempt(self, request: _Request) -> Any:
        op = request.op
        try:
            async with asyncio.timeout(self.config.bulkhead_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise self._failed(
                op, "bulkhead_full", f"{self.config.max_concurrency} calls in flight"
            ) from None
        self._in_flight += 1
        self._metrics.in_flight.labels(dependency=self.service).set(self._in_flight)
        try:
            breaker = await self._breakers.get_breaker(self.service)
            try:
                async with breaker:
                    return await self._exchange(request)
            except OpenedState:
                raise self._failed(op, "circuit_open", "circuit breaker open") from None
        finally:
            self._in_flight -= 1
            self._metrics.in_flight.labels(dependency=self.service).set(self._in_flight)
            self._slots.release()

    async def _exchange(self, request: _Request) -> Any:
        op = request.op
        path = op.path.format(**{k: quote(v, safe="") for k, v in (request.path_params or {}).items()})
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                response = await self._http.request(
                    op.method, path, params=request.query, json=request.body, headers=request.headers
                )
        except (TimeoutError, httpx.TimeoutException):
            raise self._failed(op, "timeout", f"no answer within {self.config.timeout_s}s") from None
        except httpx.ConnectError as exc:
            raise self._failed(op, "connect", type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise self._failed(op, "transport", type(exc).__name__) from None
        finally:
            self._metrics.latency.labels(dependency=self.service, operation=op.operation_id).observe(
                time.perf_counter() - started
            )
        status = response.status_code
        if status >= 500 or status == 429:
            raise self._failed(op, "http_5xx", f"HTTP {status}")
        if status >= 400:
            raise self._failed(op, "http_4xx", f"HTTP {status}")
        try:
            decoded = response.json()
        except ValueError:
            raise self._failed(op, "contract", f"HTTP {status} with a body that is not JSON") from None
        try:
            self.contract.check(op.operation_id, status, decoded)
        except ContractViolation as exc:
            raise self._failed(op, "contract", exc.detail) from None
        problem = request.check(decoded) if request.check is not None else None
        if problem is not None:
            raise self._failed(op, "contract", problem)
        return decoded

    def _failed(self, op: Operation, reason: FailureReason, detail: str) -> DependencyFailure:
        self._metrics.failures.labels(dependency=self.service, reason=reason).inc()
        return DependencyFailure(self.service, op.operation_id, reason, detail)

    def fallback(self, name: str) -> None:
        """Count that the core went on without this service, taking the fallback ``name``."""
        self._metrics.fallbacks.labels(dependency=self.service, fallback=name).inc()

    # -- health ------------------------------------------------------------------------------------
    def _on_breaker_event(self, circuit: str, event_type: str, payload: Any) -> None:
        if event_type == "state_changed":
            state = str(getattr(payload, "state", "closed"))
            self._metrics.circuit_state.labels(dependency=self.service).set(CIRCUIT_VALUE.get(state, 0))
            log.info("dependency_circuit_changed", dependency=self.service, state=state)

    async def circuit(self) -> Literal["closed", "half-opened", "opened"]:
        """The breaker's state as purgatory holds it (an open circuit past its reset time still says
        ``opened`` until the next call turns it half-open)."""
        breaker = await self._breakers.get_breaker(self.service)
        return breaker.context.state

    async def state(self) -> DependencyState:
        """up: closed and the last call answered; degraded: the last call failed or the circuit is
        half-open (or due for its trial call); open_circuit: calls fail fast; unknown: never called."""
        breaker = await self._breakers.get_breaker(self.service)
        context = breaker.context
        if context.state == "opened":
            opened_at = context.opened_at or 0.0
            if time.time() - opened_at < context.ttl:
                return "open_circuit"
            return "degraded"
        if context.state == "half-opened" or self._last_outcome == "failed":
            return "degraded"
        return "up" if self._last_outcome == "ok" else "unknown"

    async def probe(self) -> bool:
        """``GET /health`` through the same breaker and contract; False on any failure."""
        try:
            await self.call("health")
        except DependencyFailure:
            return False
        return True

    async def aclose(self) -> None:
        """Closes the client's HTTP connections; the client is not used after."""
        await self._http.aclose()
