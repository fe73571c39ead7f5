"""``/api/immune/*`` through the local stack's API gateway (its HAProxy, configured exactly as the stack
configures it) to a real ``immune-core serve`` process: routing, the gateway's aggregated health with
the core in it, authentication and rate limiting at the gateway, and the core going down."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from immune_suite.stack_config import LocalTargetConfig
from immune_suite.targets.base import Color, TrafficState
from immune_suite.targets.local.haproxy import HAProxy, haproxy_binary
from immune_suite.targets.local.layout import StackLayout
from tests.app.service_process import ServiceProcess
from tests.app.support import port_scan, wait_for
from tests.support.ports import free_port_block

# serial: the rate limit is per real second; a starved gateway would let a burst through late.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.serial]
TOKEN = "gateway-test-token-0123456789"
RATE_LIMIT = 40
AUTH_FAILURE_LIMIT = 3  # the core's failed logins per client address per minute


@dataclass
class Gateway:
    url: str
    core: ServiceProcess
    layout: StackLayout


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    base = free_port_block(100, step=250)
    ports = LocalTargetConfig(
        ingress_port=base,
        stable_port=base + 1,
        preview_port=base + 2,
        instance_base_port=base + 50,
        gateway_rate_limit_per_10s=RATE_LIMIT,
    )
    root = Path(tempfile.mkdtemp(prefix="gateway-"))  # short: the admin socket path must fit sun_path
    layout = StackLayout(root, ports, 1)
    core = ServiceProcess(
        "blue-0",
        {"IMMUNE_DATA_DIR": str(root / "data"), "IMMUNE_AUTH_FAILURE_LIMIT": str(AUTH_FAILURE_LIMIT)},
        root,
        TOKEN,
        port=layout.instance_port("blue-0"),
    ).start()
    HAProxy(layout).write_files(TrafficState(Color.BLUE, 0))
    log = (root / "haproxy.log").open("wb")
    proxy = subprocess.Popen([haproxy_binary(), "-db", "-f", str(layout.haproxy_cfg)], stdout=log, stderr=log)
    try:
        core.wait_ready()
        url = f"http://127.0.0.1:{layout.gateway_port}"
        wait_for(lambda: _get(url, "/health").status_code == 200, what="the gateway seeing the core up")
        yield Gateway(url, core, layout)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        log.close()
        core.stop()
        shutil.rmtree(root, ignore_errors=True)


def _get(url: str, path: str, source: str = "127.0.0.1", **kwargs: Any) -> httpx.Response:
    # The source address selects the client the gateway rate-limits (each test its own).
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, transport=transport, timeout=10) as client:
        return client.get(path, **kwargs)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_the_gateways_health_aggregates_the_core(gateway: Gateway) -> None:
    health = _get(gateway.url, "/health")
    assert health.status_code == 200
    core = health.json()["services"]["immune_core"]
    assert (health.json()["status"], core["status"], core["colour"], core["instances_up"]) == (
        "up",
        "up",
        "blue",
        1,
    )


def test_api_immune_reaches_the_core_and_its_detection(gateway: Gateway) -> None:
    source = "127.0.0.2"
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=gateway.url, transport=transport, headers=AUTH, timeout=10) as client:
        stored = client.post("/api/immune/events", json={"events": port_scan("198.51.100.77", ports=60)})
        assert stored.status_code == 202, stored.text
        assert stored.headers["X-Immune-Served-By"] == "blue/blue-0"

        def threat() -> list[dict[str, Any]]:
            page = client.get(
                "/api/immune/threats", params={"category": "port_scan", "antigen": "198.51.100.77"}
            )
            assert page.status_code == 200, page.text
            items: list[dict[str, Any]] = page.json()["items"]
            return items

        assert wait_for(threat, what="the scan's threat through the gateway")[0]["antigen"] == "198.51.100.77"
        ready = client.get("/api/immune/health/ready")
        assert ready.status_code == 200 and "services" in ready.json()  # the core's own readiness


def test_the_gateway_refuses_a_request_without_a_token_before_the_core(gateway: Gateway) -> None:
    refused = _get(gateway.url, "/api/immune/threats", source="127.0.0.4")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.headers["X-Immune-Served-By"].endswith("<NOSRV>")  # the core never saw it
    # The token itself is checked by the core: a wrong one is the core's 403 (docs/service.md, Roles).
    wrong = _get(
        gateway.url, "/api/immune/threats", source="127.0.0.4", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403 and wrong.headers["X-Immune-Served-By"] == "blue/blue-0"
    assert _get(gateway.url, "/elsewhere", source="127.0.0.4").status_code == 404


def test_the_core_throttles_failed_logins_per_real_client_address_behind_the_gateway(
    gateway: Gateway,
) -> None:
    wrong = {"Authorization": "Bearer not-a-token"}
    guesses = [
        _get(gateway.url, "/api/immune/stats", source="127.0.0.8", headers=wrong).status_code
        for _ in range(AUTH_FAILURE_LIMIT + 1)
    ]
    assert guesses[:AUTH_FAILURE_LIMIT] == [403] * AUTH_FAILURE_LIMIT and guesses[-1] == 429
    # The gateway forwards the client's address (X-Forwarded-For): another client is not throttled.
    assert _get(gateway.url, "/api/immune/stats", source="127.0.0.9", headers=wrong).status_code == 403


def test_the_gateway_rate_limits_each_client_address(gateway: Gateway) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=gateway.url, transport=transport, headers=AUTH, timeout=10) as client:
        statuses = [client.get("/api/immune/stats").status_code for _ in range(RATE_LIMIT + 10)]
        limited = client.get("/api/immune/stats")
    assert statuses[:RATE_LIMIT] == [200] * RATE_LIMIT
    assert 429 in statuses[RATE_LIMIT:]
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "10"
    # Another client address is not affected.
    assert _get(gateway.url, "/api/immune/stats", source="127.0.0.5", headers=AUTH).status_code == 200


def test_with_the_core_down_the_gateway_reports_it_and_answers_503(gateway: Gateway) -> None:
    gateway.core.kill()  # last test of the module: the core does not come back
    wait_for(lambda: _get(gateway.url, "/health").status_code == 503, what="the gateway seeing the core down")
    health = _get(gateway.url, "/health").json()
    assert health == {
        "status": "degraded",
        "services": {"immune_core": {"status": "down", "instances_up": 0}},
    }
    assert _get(gateway.url, "/api/immune/stats", source="127.0.0.6", headers=AUTH).status_code == 503
