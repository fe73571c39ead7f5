"""Every client against a real local server of its contract, in each failure mode (no HTTP mocks).

Per client: a valid answer is parsed (good case); down, slow past the timeout, 5xx, malformed or
out-of-schema bodies each end in the client's named fallback with the failure counted by reason
(bad cases); transient failures are retried, contract failures are not; flapping is absorbed by the
retries; consecutive failures open the circuit (calls then fail fast without reaching the service);
after the reset time a half-open trial closes it again, or re-opens it if the service still fails;
the bulkhead bounds concurrent calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.app.clients.cases import CASES, Case, calls, failures, make_client, sample
from tests.app.clients.servers import ServiceServer, build

pytestmark = pytest.mark.parametrize("case", CASES, ids=str)


@pytest.fixture
def server(case: Case) -> Iterator[ServiceServer]:
    running = build(case.service)
    yield running
    running.stop()


async def test_an_answer_within_the_contract_is_returned(case: Case, server: ServiceServer) -> None:
    client, registry = make_client(case, server.url)
    try:
        assert await case.invoke(client) is not None
        assert await client.state() == "up"
        assert server.bad_requests == []  # what the client sends is what the contract asks for
        assert calls(registry, case, "ok") == 1
        assert await client.probe()
    finally:
        await client.aclose()


async def test_down_takes_the_fallback_after_retrying(case: Case, server: ServiceServer) -> None:
    server.stop()
    client, registry = make_client(case, server.url, retries=2)
    try:
        assert await case.invoke(client) is None
        assert failures(registry, case, "connect") == 3
        assert (
            sample(
                registry, "immune_dependency_fallbacks_total", dependency=case.service, fallback=case.fallback
            )
            == 1
        )
        assert await client.state() == "degraded"
    finally:
        await client.aclose()


async def test_slow_beyond_the_timeout_is_a_timeout(case: Case, server: ServiceServer) -> None:
    server.mode, server.slow_s = "slow", 3.0
    client, registry = make_client(case, server.url, timeout_s=0.2, retries=1)
    try:
        assert await case.invoke(client) is None
        assert failures(registry, case, "timeout") == 2
        assert server.count(case.operation) == 2  # idempotent: retried once
    finally:
        await client.aclose()


async def test_5xx_is_retried_then_the_fallback_is_taken(case: Case, server: ServiceServer) -> None:
    server.mode = "error"
    client, registry = make_client(case, server.url, retries=2)
    try:
        assert await case.invoke(client) is None
        assert server.count(case.operation) == 3
        assert failures(registry, case, "http_5xx") == 3
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["malformed", "invalid"])
async def test_a_body_outside_the_contract_fails_the_call_and_counts_for_the_breaker(
    case: Case, server: ServiceServer, mode: str
) -> None:
    server.mode = mode
    client, registry = make_client(case, server.url, retries=2, breaker_threshold=2)
    try:
        assert await case.invoke(client) is None
        assert server.count(case.operation) == 1  # a wrong answer is not transient: no retry
        assert failures(registry, case, "contract") == 1
        assert await case.invoke(client) is None
        assert await client.state() == "open_circuit"
    finally:
        await client.aclose()


async def test_flapping_is_absorbed_by_the_retries(case: Case, server: ServiceServer) -> None:
    server.script.extend(["error", "ok", "error", "ok", "error", "ok"])
    # Generous timeouts: every answer here is prompt, but a 1 s timeout under CPU load turns a slow "ok"
    # into a timeout (a second failure in a row: the fallback, a wrong count). Only 5xx must fail here.
    client, registry = make_client(
        case, server.url, retries=1, breaker_threshold=2, timeout_s=30.0, connect_timeout_s=10.0
    )
    try:
        for _ in range(3):
            assert await case.invoke(client) is not None
        assert server.count(case.operation) == 6
        assert failures(registry, case, "http_5xx") == 3
        assert await client.circuit() == "closed"  # never two failures in a row
        assert failures(registry, case, "timeout") == 0
    finally:
        await client.aclose()


async def test_consecutive_failures_open_the_circuit_and_calls_fail_fast(
    case: Case, server: ServiceServer
) -> None:
    server.mode = "error"
    client, registry = make_client(case, server.url, retries=0, breaker_threshold=2)
    try:
        assert await case.invoke(client) is None
        assert await case.invoke(client) is None
        assert await client.state() == "open_circuit"
        assert sample(registry, "immune_dependency_circuit_state", dependency=case.service) == 2
        reached = server.count(case.operation)
        assert await case.invoke(client) is None
        assert server.count(case.operation) == reached  # failed fast, the service was not called
        assert failures(registry, case, "circuit_open") == 1
        assert calls(registry, case, "rejected") == 1
    finally:
        await client.aclose()


async def _wait_until_due_for_trial(client: object) -> None:
    for _ in range(200):
        if await client.state() != "open_circuit":  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the circuit never came due for its half-open trial")


async def test_recovering_service_closes_the_circuit_through_half_open(
    case: Case, server: ServiceServer
) -> None:
    server.stop()
    client, registry = make_client(case, server.url, retries=0, breaker_threshold=2, breaker_reset_s=0.3)
    try:
        await case.invoke(client)
        await case.invoke(client)
        assert await client.state() == "open_circuit"
        server.start()  # the same port: the service is back
        await _wait_until_due_for_trial(client)
        assert await client.state() == "degraded"  # due for a trial, not yet proven
        assert await case.invoke(client) is not None  # the half-open trial
        assert await client.circuit() == "closed"
        assert await client.state() == "up"
        assert sample(registry, "immune_dependency_circuit_state", dependency=case.service) == 0
    finally:
        await client.aclose()


async def test_a_failed_half_open_trial_opens_the_circuit_again(case: Case, server: ServiceServer) -> None:
    server.mode = "error"
    client, _ = make_client(case, server.url, retries=0, breaker_threshold=2, breaker_reset_s=0.3)
    try:
        await case.invoke(client)
        await case.invoke(client)
        await _wait_until_due_for_trial(client)
        before = server.count(case.operation)
        assert await case.invoke(client) is None
        assert server.count(case.operation) == before + 1  # the trial reached the service, and failed
        assert await client.state() == "open_circuit"
    finally:
        await client.aclose()


async def test_the_bulkhead_bounds_concurrent_calls(case: Case, server: ServiceServer) -> None:
    server.mode, server.slow_s = "slow", 0.5
    client, registry = make_client(
        case, server.url, timeout_s=3.0, retries=0, max_concurrency=1, bulkhead_wait_s=0.05
    )
    try:
        first, second = await asyncio.gather(case.invoke(client), case.invoke(client))
        assert [first is None, second is None].count(True) == 1
        assert failures(registry, case, "bulkhead_full") == 1
        assert server.count(case.operation) == 1
    finally:
        await client.aclose()


async def test_a_4xx_is_not_the_services_fault_and_does_not_open_the_circuit(
    case: Case, server: ServiceServer
) -> None:
    server.mode = "reject"
    client, registry = make_client(case, server.url, retries=2, breaker_threshold=1)
    try:
        assert await case.invoke(client) is None
        assert await case.invoke(client) is None
        assert server.count(case.operation) == 2  # not retried either
        assert failures(registry, case, "http_4xx") == 2
        assert await client.circuit() == "closed"
    finally:
        await client.aclose()
