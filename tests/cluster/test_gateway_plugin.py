"""The platform gateway's Traefik plugin (cluster/router/plugins-local, docs/infra.md "The platform
gateway") outside Kubernetes: its Go unit tests, then the real router binary (router.sh's cached build)
loading it as a local plugin (Yaegi) with a file provider, in front of a real HTTP server standing in for
the core. Same chain as the program's platform route: plugin (mode api), Traefik's rateLimit, and the
plugin in mode health on GET /health. No cluster needed; the end-to-end case on the real cluster is
tests/cluster/test_deploy.py::test_the_platform_gateway_checks_limits_and_aggregates_the_cores_health.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from tests.app.support import wait_for
from tests.cluster.router_harness import free_port
from tests.cluster.support import REPO, read_versions

pytestmark = pytest.mark.cluster

MODULE = "github.com/active-immune-core/immunegateway"
PLUGIN = REPO / "cluster" / "router" / "plugins-local" / "src" / MODULE
LIMIT = 5


def test_plugin_unit_tests_pass() -> None:
    proc = subprocess.run(["go", "test", "./..."], cwd=PLUGIN, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class Core(BaseHTTPRequestHandler):
    """The core's stand-in: counts what reaches it; answers with the core's X-Immune-* headers."""

    hits = 0
    ready = True

    def do_GET(self) -> None:
        type(self).hits += 1
        status = 200 if type(self).ready or self.path != "/health/ready" else 503
        self.send_response(status)
        self.send_header("X-Immune-Color", "blue")
        self.send_header("X-Immune-Instance", "immune-core-blue-test")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"path":"' + self.path.encode() + b'"}')

    def log_message(self, *args: object) -> None:
        pass


def _answers(url: str) -> bool:
    """200 from `url`; False while nothing listens yet (the router is still starting)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    binary = (
        Path.home()
        / ".cache/active-immune-core"
        / f"traefik-{read_versions()['TRAEFIK_VERSION']}"
        / "traefik"
    )
    if not binary.is_file():
        pytest.fail(f"{binary} missing: bash cluster/router/router.sh build")
    core = ThreadingHTTPServer(("127.0.0.1", 0), Core)
    threading.Thread(target=core.serve_forever, daemon=True).start()
    Core.hits, Core.ready = 0, True
    target = tmp_path / "plugins-local" / "src" / MODULE
    shutil.copytree(PLUGIN, target, ignore=shutil.ignore_patterns("*_test.go"))
    port, core_url = free_port(), f"http://127.0.0.1:{core.server_address[1]}"
    (tmp_path / "dynamic.yaml").write_text(
        yaml.safe_dump(
            {
                "http": {
                    "routers": {
                        "api": {
                            "rule": "PathPrefix(`/api/immune`)",
                            "middlewares": ["api", "limit"],
                            "service": "core",
                        },
                        "health": {
                            "rule": "Path(`/health`)",
                            "middlewares": ["health", "ready"],
                            "service": "core",
                        },
                        "empty": {"rule": "Path(`/empty`)", "middlewares": ["health"], "service": "none"},
                    },
                    "middlewares": {
                        "api": {"plugin": {"immunegateway": {"mode": "api", "service": "immune_core"}}},
                        "health": {"plugin": {"immunegateway": {"mode": "health", "service": "immune_core"}}},
                        "limit": {"rateLimit": {"average": LIMIT, "period": "10s", "burst": LIMIT}},
                        "ready": {"replacePath": {"path": "/health/ready"}},
                    },
                    "services": {
                        "core": {"loadBalancer": {"servers": [{"url": core_url}]}},
                        "none": {"loadBalancer": {"servers": []}},
                    },
                }
            }
        )
    )
    (tmp_path / "static.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
                "entryPoints": {"web": {"address": f"127.0.0.1:{port}"}},
                "providers": {"file": {"filename": str(tmp_path / "dynamic.yaml")}},
                "experimental": {"localPlugins": {"immunegateway": {"moduleName": MODULE}}},
            }
        )
    )
    log = (tmp_path / "traefik.log").open("w")
    router = subprocess.Popen(
        [str(binary), f"--configFile={tmp_path / 'static.yaml'}"], cwd=tmp_path, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/health"), timeout_s=60, what="the router with the plugin")
        yield url
    finally:
        router.terminate()
        router.wait(timeout=30)
        core.shutdown()
        log.close()


def test_the_real_router_runs_the_plugin_in_the_platform_routes_chain(gateway: str) -> None:
    hits = Core.hits
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}):
        refused = httpx.get(f"{gateway}/api/immune/threats", headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.headers["x-immune-served-by"] == "gateway"
    assert Core.hits == hits  # not forwarded
    bearer = {"Authorization": "Bearer t"}
    ok = httpx.get(f"{gateway}/api/immune/threats", headers=bearer)
    assert ok.status_code == 200 and ok.headers["x-immune-served-by"] == "blue/immune-core-blue-test"
    assert Core.hits == hits + 1
    codes = [httpx.get(f"{gateway}/api/immune/threats", headers=bearer) for _ in range(2 * LIMIT)]
    limited = [answer for answer in codes if answer.status_code == 429]
    assert limited and all(a.headers["x-immune-served-by"] == "gateway" for a in limited)
    assert all(int(a.headers["retry-after"]) >= 1 for a in limited)

    health = httpx.get(f"{gateway}/health")
    assert health.status_code == 200
    assert health.json()["services"]["immune_core"] == {
        "status": "up",
        "colour": "blue",
        "instance": "immune-core-blue-test",
    }
    Core.ready = False  # the core's own 503 on /health/ready
    down = httpx.get(f"{gateway}/health")
    assert down.status_code == 503
    assert down.json() == {
        "status": "degraded",
        "services": {"immune_core": {"status": "down", "upstream_status": 503}},
    }
    empty = httpx.get(f"{gateway}/empty")  # no server at all: the router's own 503
    assert empty.status_code == 503 and empty.json()["services"]["immune_core"]["status"] == "down"
