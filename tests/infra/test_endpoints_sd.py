"""The bundled Prometheus's endpoint discovery without DNS (immune_infra/endpoints_sd.py), run as the
sidecar runs it (`python3 endpoints_sd.py`, standard library only) against a real local HTTP server that
answers as the Kubernetes API does, and fails as it can (5xx, 401, malformed, down)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from immune_infra import endpoints_sd

SCRIPT = Path(endpoints_sd.__file__)
NAMESPACE = "immune-staging"
SERVICES = ("immune-core-blue-pods", "immune-core-green-pods")
TOKEN = "token-of-the-test"  # nosec B105: a test's fake bearer token


def endpoint_slice(service: str, endpoints: list[dict[str, Any]], port: int = 8080) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{service}-x1", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def endpoint(address: str, pod: str, ready: bool = True, terminating: bool = False) -> dict[str, Any]:
    return {
        "addresses": [address],
        "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
        "targetRef": {"kind": "Pod", "name": pod, "namespace": NAMESPACE},
    }


@dataclass
class FakeApi:
    """What the fake API answers next: pages of EndpointSliceList, or a status and a raw body."""

    pages: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    raw: bytes | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path+query, Authorization)


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, str]]:
    state = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, b'{"kind":"Status","code":401}')
            if state.raw is not None or state.status != 200:
                return self._send(state.status, state.raw or b"{}")
            query = parse_qs(urlparse(self.path).query)
            index = int(query.get("continue", ["0"])[0])
            page = dict(state.pages[index])
            more = index + 1 < len(state.pages)
            page["metadata"] = {"continue": str(index + 1)} if more else {}
            self._send(200, json.dumps(page).encode())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def page(*slices: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1", "items": list(slices)}


def run_once(
    api_url: str, output: Path, tmp_path: Path, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    services = [arg for service in SERVICES for arg in ("--service", service)]
    return subprocess.run(
        [
            sys.executable, "-I", str(SCRIPT), "--once", f"--api-url={api_url}", f"--token-file={token_file}",
            f"--namespace={NAMESPACE}", *services, "--port=http", f"--output={output}",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_every_pod_of_both_colours_becomes_a_target(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    state, url = api
    state.pages = [
        page(
            endpoint_slice(
                SERVICES[0],
                [
                    endpoint("10.244.0.53", "immune-core-blue-b"),
                    endpoint("10.244.0.52", "immune-core-blue-a"),
                    endpoint("10.244.0.54", "immune-core-blue-c", ready=False),
                    endpoint("10.244.0.59", "immune-core-blue-old", ready=False, terminating=True),
                ],
            )
        ),
        page(endpoint_slice(SERVICES[1], [endpoint("10.244.0.60", "immune-core-green-a")])),
    ]
    output = tmp_path / "app.json"
    done = run_once(url, output, tmp_path)
    assert done.returncode == 0, done.stderr
    groups = json.loads(output.read_text())
    assert [group["targets"] for group in groups] == [
        ["10.244.0.52:8080"], ["10.244.0.53:8080"], ["10.244.0.54:8080"], ["10.244.0.60:8080"],
    ]  # fmt: skip
    labels = {group["targets"][0]: group["labels"] for group in groups}
    assert labels["10.244.0.54:8080"] == {
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_service_name": SERVICES[0],
        "__meta_kubernetes_pod_name": "immune-core-blue-c",
        "__meta_kubernetes_endpointslice_endpoint_conditions_ready": "false",
    }
    assert labels["10.244.0.60:8080"]["__meta_kubernetes_service_name"] == SERVICES[1]
    # Both pages were read, each with the token, for exactly the two Services of the namespace.
    assert len(state.requests) == 2
    path, auth = state.requests[0]
    assert auth == f"Bearer {TOKEN}"
    assert path.startswith(f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices?")
    selector = parse_qs(urlparse(path).query)["labelSelector"][0]
    assert selector == f"kubernetes.io/service-name in ({','.join(SERVICES)})"


def test_no_endpoints_is_an_empty_file_not_the_last_one(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    """Scaled to zero: no targets (the canary checks then see no data and fail), never stale pods."""
    state, url = api
    output = tmp_path / "app.json"
    state.pages = [page(endpoint_slice(SERVICES[0], [endpoint("10.244.0.52", "a")]))]
    assert run_once(url, output, tmp_path).returncode == 0
    state.pages = [page(endpoint_slice(SERVICES[0], []) | {"ports": None})]
    assert run_once(url, output, tmp_path).returncode == 0
    assert json.loads(output.read_text()) == []


@pytest.mark.parametrize(
    ("status", "raw", "token", "reason"),
    [
        (500, b'{"kind":"Status","code":500}', TOKEN, "HTTP 500"),
        (200, b"<html>not the api</html>", TOKEN, "not JSON"),
        (200, b'{"kind":"PodList","items":[]}', TOKEN, "not an EndpointSliceList"),
        (200, b'{"kind":"EndpointSliceList","items":[{"metadata":{"name":"x"}}]}', TOKEN, "no kubernetes.io"),
        (200, None, "a-revoked-token", "HTTP 401"),
    ],
)
def test_a_failed_poll_keeps_the_last_targets_and_says_why(
    api: tuple[FakeApi, str], tmp_path: Path, status: int, raw: bytes | None, token: str, reason: str
) -> None:
    state, url = api
    output = tmp_path / "app.json"
    state.pages = [page(endpoint_slice(SERVICES[0], [endpoint("10.244.0.52", "a")]))]
    assert run_once(url, output, tmp_path).returncode == 0
    before = output.read_text()
    state.status, state.raw = status, raw
    done = run_once(url, output, tmp_path, token=token)
    assert done.returncode == 1
    assert output.read_text() == before
    failure = json.loads(done.stderr.strip().splitlines()[-1])
    assert failure["event"] == "discovery_failed" and reason in failure["error"], failure


def test_an_api_that_does_not_answer_fails_the_poll(tmp_path: Path) -> None:
    output = tmp_path / "app.json"
    done = run_once("http://127.0.0.1:9", output, tmp_path)
    assert done.returncode == 1 and not output.exists()
    assert json.loads(done.stderr.strip().splitlines()[-1])["event"] == "discovery_failed"


def test_outside_a_pod_without_an_api_url_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-I", str(SCRIPT), "--namespace=x", "--service=y", "--port=http",
            f"--output={tmp_path}/o",
        ],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2 and "KUBERNETES_SERVICE_HOST" in done.stderr
    done = run_once("file:///etc", tmp_path / "o", tmp_path)
    assert done.returncode == 2 and "must be http(s)://" in done.stderr


def probe(output: Path, kind: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-I", str(SCRIPT), f"--probe={kind}", "--api-url=http://127.0.0.1:9",
            "--namespace=x", "--service=y", "--port=http", f"--output={output}", "--interval=5",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_probes_follow_the_last_poll(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    state, url = api
    output = tmp_path / "app.json"
    assert probe(output, "alive").returncode == 1  # never polled
    state.pages = [page(endpoint_slice(SERVICES[0], [endpoint("10.244.0.52", "a")]))]
    assert run_once(url, output, tmp_path).returncode == 0
    assert probe(output, "alive").returncode == 0 and probe(output, "ready").returncode == 0
    state.status = 503
    assert run_once(url, output, tmp_path).returncode == 1
    assert probe(output, "alive").returncode == 0
    not_ready = probe(output, "ready")
    assert not_ready.returncode == 1 and "HTTP 503" in not_ready.stderr
    # A loop that stopped polling is not alive.
    passed, why = endpoints_sd.probe(output, "alive", 5.0, now=time.time() + 600)
    assert not passed and why.startswith("last poll 6") and why.endswith(" s ago")


def test_missing_credentials_fail_the_poll_not_the_loop(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    _, url = api
    output = tmp_path / "app.json"
    services = [arg for service in SERVICES for arg in ("--service", service)]
    for credentials in ([f"--token-file={tmp_path}/absent"], [f"--ca-file={tmp_path}/absent"]):
        done = subprocess.run(
            [
                sys.executable, "-I", str(SCRIPT), "--once", f"--api-url={url.replace('http:', 'https:')}",
                f"--namespace={NAMESPACE}", *services, "--port=http", f"--output={output}", *credentials,
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        failure = json.loads(done.stderr.strip().splitlines()[-1])
        assert failure["event"] == "discovery_failed" and "credentials" in failure["error"], failure
