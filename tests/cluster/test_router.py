"""The cluster's router (cluster/router/router.sh, Traefik) moves real requests by the program's routes.

A real etcd + kube-apiserver (tests/cluster/router_harness.py) holds the program's own rendered
HTTPRoutes and Ingresses (`immune_infra.render.render_stack`, staging, with rollout overrides); the
stable and preview Services have no selector (there are no pods here) and hand-written EndpointSlices,
as the EndpointSlice controller would publish them, pointing at two real HTTP servers that answer
"blue" and "green". Requests go through the router's 127.0.0.1 ports with the stack's Host.

Bad cases: a router that ignored weights splits 50/50 (fails the binomial bound at 90/10) and keeps
sending blue at 0/100; a backend without endpoints must answer 503 at once, not hang.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from immune_infra.immune_app import (
    BASELINE_SERVICE,
    CANARY_HEADER,
    PLATFORM_ROUTE,
    PREVIEW_SERVICE,
    SERVICE_PORT,
    STABLE_SERVICE,
)
from immune_infra.monitoring import router_service_regex
from immune_infra.render import render_stack
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import binomtest

from tests.app.support import wait_for
from tests.cluster.router_harness import (
    ColourServer,
    ControlPlane,
    control_plane_binaries,
    host_address,
    router,
    router_env,
    weighted_children,
)

# A cold machine builds the cluster's binaries and Traefik inside the first test's fixtures (tens of
# minutes on 2 cores; cached afterwards): the per-test limit of pyproject.toml cannot cover that. Every
# wait inside the tests has its own bound (APPLY_TIMEOUT_S, NO_HANG_TIMEOUT_S).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(7200)]

STACK = "staging"
GATEWAY_NAMESPACE = "router-test-gateway"
GATEWAY_NAME = "immune-gateway"
REQUESTS = 1000
# Family-wise tolerance of the split check: a correct router fails it once in a thousand runs.
ALPHA = 1e-3
APPLY_TIMEOUT_S = 60.0
NO_HANG_TIMEOUT_S = 5.0
BASELINE_IMAGE = "ghcr.io/active-immune-core/immune-core@sha256:" + "ab" * 32


def split_matches(hits: int, total: int, share: float, alpha: float = ALPHA) -> bool:
    """Whether `hits` of `total` requests is consistent with routing a `share` (0..1) of them.

    Exact (Clopper-Pearson) confidence interval of the binomial proportion at level 1 - alpha
    (scipy.stats.binomtest(...).proportion_ci); the share must lie inside it. No requests is no
    evidence and fails.
    """
    if total <= 0:
        return False
    interval = binomtest(hits, total, share).proportion_ci(confidence_level=1 - alpha)
    return bool(interval.low <= share <= interval.high)


def test_split_check_accepts_the_weight_and_rejects_ignored_weights() -> None:
    assert split_matches(100, 1000, 0.10)
    assert split_matches(83, 1000, 0.10)
    # A router ignoring weights (round robin over two backends) or sending none to the canary.
    assert not split_matches(500, 1000, 0.10)
    assert not split_matches(0, 1000, 0.10)
    assert not split_matches(0, 0, 0.10)


@functools.cache
def rendered(mode: str, weight: int, baseline: int = 0) -> list[dict[str, Any]]:
    """The program's routing objects for staging at `weight`% canary (HTTPRoutes or Ingresses), with a
    fresh baseline of `baseline` pods (0: none)."""
    overrides: dict[str, Any] = {
        "rollout": {"activeColor": "blue", "canaryWeight": weight},
        "routing": {"mode": mode, "gatewayName": GATEWAY_NAME, "gatewayNamespace": GATEWAY_NAMESPACE},
    }
    if baseline:
        overrides["rollout"]["baseline"] = {"image": BASELINE_IMAGE, "replicas": baseline}
    stack = render_stack(STACK, overrides)
    kinds = {"gateway": "HTTPRoute", "nginx": "Ingress"}[mode]
    return [manifest for manifest in stack.manifests if manifest.get("kind") == kinds]


class Cluster:
    """The test's objects in the API server, written as the program and the controllers would."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.client = plane.api()
        self.namespace = namespace

    def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply, as Pulumi's Kubernetes provider does."""
        api_version = manifest["apiVersion"]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        plural = {
            "Namespace": "namespaces",
            "Service": "services",
            "EndpointSlice": "endpointslices",
            "HTTPRoute": "httproutes",
            "Ingress": "ingresses",
            "Middleware": "middlewares",
        }[manifest["kind"]]
        name = manifest["metadata"]["name"]
        namespace = manifest["metadata"].get("namespace")
        path = f"{base}/namespaces/{namespace}/{plural}/{name}" if namespace else f"{base}/{plural}/{name}"
        response = self.client.patch(
            path,
            params={"fieldManager": "router-test", "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            content=json.dumps(manifest),
        )
        assert response.status_code in (200, 201), response.text

    def service(self, name: str, backend: ColourServer | None) -> None:
        """A Service without selector and its EndpointSlice: one ready endpoint, or none at all."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}]},
            }
        )
        endpoints = []
        if backend is not None:
            endpoints = [
                {"addresses": [backend.server_address[0]], "conditions": {"ready": True, "serving": True}}
            ]
        port = backend.port if backend is not None else 8080
        self.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-slice",
                    "namespace": self.namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            }
        )


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    control = ControlPlane(workdir=tmp_path_factory.mktemp("control-plane"), bin_dir=control_plane_binaries())
    try:
        control.start()
        yield control
    finally:
        control.stop()


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, ColourServer]]:
    address = host_address()
    servers = {colour: ColourServer(colour, address) for colour in ("blue", "green")}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="module")
def cluster(plane: ControlPlane, backends: dict[str, ColourServer]) -> Cluster:
    namespace = rendered("gateway", 10)[0]["metadata"]["namespace"]
    objects = Cluster(plane, namespace)
    objects.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    # activeColor blue: stable selects blue, preview the other colour.
    objects.service(STABLE_SERVICE, backends["blue"])
    objects.service(PREVIEW_SERVICE, backends["green"])
    return objects


@pytest.fixture(scope="module")
def routed(
    plane: ControlPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    env = router_env(plane, tmp_path_factory.mktemp("router-state"), GATEWAY_NAMESPACE)
    env["ROUTER_GATEWAY_NAME"] = GATEWAY_NAME
    built = router("build", env, timeout_s=3600)
    assert built.returncode == 0, built.stderr
    started = router("up", env)
    log = Path(env["AIC_CLUSTER_STATE"], "logs", "router.log")
    assert started.returncode == 0, started.stderr + (log.read_text() if log.exists() else "")
    try:
        yield env
    finally:
        router("down", env)


def gateway(env: dict[str, str], host: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{env['ROUTER_GATEWAY_PORT']}",
        headers={"Host": host},
        timeout=NO_HANG_TIMEOUT_S,
    )


def ingress(env: dict[str, str], host: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{env['ROUTER_INGRESS_PORT']}",
        headers={"Host": host},
        timeout=NO_HANG_TIMEOUT_S,
    )


GATEWAY_PROVIDER = "kubernetesgateway"
INGRESS_PROVIDER = "kubernetesingressnginx"


def backend_of(provider: str, namespace: str, child: str) -> str | None:
    """Which Service a child of a weighted router service stands for (Traefik's naming).

    Gateway API: `<router>-svc-<namespace>-<service>-<index>`; ingress-nginx canary:
    `<primary>` (the stable Ingress's backend) and `<primary>-canary` (the canary Ingress's).
    """
    name = child.split("@", 1)[0]
    if provider == GATEWAY_PROVIDER:
        for backend in (STABLE_SERVICE, PREVIEW_SERVICE):
            if re.search(rf"-svc-{re.escape(namespace)}-{re.escape(backend)}-\d+$", name):
                return backend
        return None
    if namespace not in name:
        return None
    return PREVIEW_SERVICE if name.endswith("-canary") else STABLE_SERVICE


def applied_weights(env: dict[str, str], provider: str, namespace: str) -> list[dict[str, int]]:
    """Per weighted service of the router: {Service name: weight} of its children in `namespace`."""
    found = []
    for service in weighted_children(int(env["ROUTER_ADMIN_PORT"]), provider):
        weights = {}
        for child in service["weighted"].get("services", []):
            backend = backend_of(provider, namespace, child["name"])
            if backend is not None:
                weights[backend] = int(child.get("weight", 1))
        if weights:
            found.append(weights)
    return found


def wait_for_weights(env: dict[str, str], provider: str, namespace: str, expected: dict[str, int]) -> None:
    """Until the router's runtime configuration carries exactly these backend weights."""
    deadline = time.monotonic() + APPLY_TIMEOUT_S
    seen: list[dict[str, int]] = []
    while time.monotonic() < deadline:
        seen = applied_weights(env, provider, namespace)
        if expected in seen:
            return
        time.sleep(0.2)
    raise AssertionError(f"router never applied weights {expected}; it has {seen}")


def colours(client: httpx.Client, count: int, headers: dict[str, str] | None = None) -> Counter[str]:
    served: Counter[str] = Counter()
    for _ in range(count):
        response = client.get("/", headers=headers)
        served[response.text if response.status_code == 200 else f"HTTP {response.status_code}"] += 1
    return served


def test_weighted_httproute_splits_within_binomial_bound(routed: dict[str, str], cluster: Cluster) -> None:
    routes = rendered("gateway", 10)
    for route in routes:
        cluster.apply(route)
    stable = next(route for route in routes if route["metadata"]["name"] == STABLE_SERVICE)
    wait_for_weights(routed, GATEWAY_PROVIDER, cluster.namespace, {STABLE_SERVICE: 90, PREVIEW_SERVICE: 10})
    with gateway(routed, stable["spec"]["hostnames"][0]) as client:
        served = colours(client, REQUESTS)
        forced = colours(client, 50, headers={CANARY_HEADER: "always"})
    assert set(served) == {"blue", "green"}, served
    assert split_matches(served["green"], REQUESTS, 0.10), served
    # The program's header rule forces the canary.
    assert forced == Counter({"green": 50}), forced


def test_platform_route_middlewares_resolve_through_extension_refs(
    routed: dict[str, str], cluster: Cluster
) -> None:
    """The program's platform route with its Traefik Middlewares (docs/infra.md "The platform gateway"):
    the router resolves the ExtensionRef filters (kubernetesCRD provider, CRDs applied by router.sh) and
    runs the local plugin: 401 at the gateway without a token, the blue backend with one. The whole
    behaviour against the real core: tests/cluster/test_deploy.py."""
    stack = render_stack(STACK, {
        "rollout": {"activeColor": "blue", "canaryWeight": 0},
        "routing": {"mode": "gateway", "gatewayName": GATEWAY_NAME, "gatewayNamespace": GATEWAY_NAMESPACE},
    })  # fmt: skip
    for manifest in stack.of_kind("Middleware"):
        cluster.apply(manifest)
    route = stack.find("HTTPRoute", PLATFORM_ROUTE)
    cluster.apply(route)
    with gateway(routed, route["spec"]["hostnames"][0]) as client:

        def refused() -> httpx.Response | None:
            answer = client.get("/api/immune/threats")
            return answer if answer.status_code == 401 else None

        answer = wait_for(refused, timeout_s=APPLY_TIMEOUT_S, what="the platform route's bearer check")
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.headers["x-immune-served-by"] == "gateway" and "blue" not in answer.text
        allowed = client.get("/api/immune/threats", headers={"Authorization": "Bearer t"})
        assert allowed.status_code == 200 and allowed.text == "blue", allowed.text


def test_full_canary_weight_sends_every_request_to_green(routed: dict[str, str], cluster: Cluster) -> None:
    routes = rendered("gateway", 100)
    for route in routes:
        cluster.apply(route)
    stable = next(route for route in routes if route["metadata"]["name"] == STABLE_SERVICE)
    wait_for_weights(routed, GATEWAY_PROVIDER, cluster.namespace, {STABLE_SERVICE: 0, PREVIEW_SERVICE: 100})
    with gateway(routed, stable["spec"]["hostnames"][0]) as client:
        served = colours(client, 300)
    assert served == Counter({"green": 300}), served


def test_backend_without_endpoints_answers_503_at_once(
    routed: dict[str, str], cluster: Cluster, backends: dict[str, ColourServer]
) -> None:
    # A Service whose pods are all gone or unready: the EndpointSlice controller publishes a slice
    # without endpoints. The preview host routes to it alone.
    cluster.service(PREVIEW_SERVICE, None)
    preview = next(
        route for route in rendered("gateway", 100) if route["metadata"]["name"] == PREVIEW_SERVICE
    )
    try:
        with gateway(routed, preview["spec"]["hostnames"][0]) as client:
            deadline = time.monotonic() + APPLY_TIMEOUT_S
            status = 0
            while time.monotonic() < deadline:
                status = client.get("/").status_code  # a hang raises httpx.ReadTimeout
                if status == 503:
                    break
                time.sleep(0.2)
            assert status == 503
    finally:
        cluster.service(PREVIEW_SERVICE, backends["green"])


def test_router_restart_keeps_routing(routed: dict[str, str], cluster: Cluster) -> None:
    stable = next(route for route in rendered("gateway", 100) if route["metadata"]["name"] == STABLE_SERVICE)
    host = stable["spec"]["hostnames"][0]
    stopped = router("down", routed)
    assert stopped.returncode == 0, stopped.stderr
    assert router("status", routed).returncode == 3
    with gateway(routed, host) as client, pytest.raises(httpx.ConnectError):
        client.get("/")
    started = router("up", routed)
    assert started.returncode == 0, started.stderr
    assert router("status", routed).returncode == 0
    pid_file = Path(routed["AIC_CLUSTER_STATE"], "router", "router.pid")
    pid = pid_file.read_text()
    again = router("up", routed)  # idempotent: the running router is kept
    assert again.returncode == 0 and "already running" in again.stderr, again.stderr
    assert pid_file.read_text() == pid
    wait_for_weights(routed, GATEWAY_PROVIDER, cluster.namespace, {STABLE_SERVICE: 0, PREVIEW_SERVICE: 100})
    with gateway(routed, host) as client:
        assert colours(client, 100) == Counter({"green": 100})


def test_nginx_canary_ingress_weight_moves_traffic(routed: dict[str, str], cluster: Cluster) -> None:
    ingresses = rendered("nginx", 10)
    for manifest in ingresses:
        cluster.apply(manifest)
    stable = next(item for item in ingresses if item["metadata"]["name"] == STABLE_SERVICE)
    host = stable["spec"]["rules"][0]["host"]
    wait_for_weights(routed, INGRESS_PROVIDER, cluster.namespace, {STABLE_SERVICE: 90, PREVIEW_SERVICE: 10})
    with ingress(routed, host) as client:
        served = colours(client, REQUESTS)
        forced = colours(client, 50, headers={CANARY_HEADER: "always"})
    assert split_matches(served["green"], REQUESTS, 0.10), served
    assert forced == Counter({"green": 50}), forced
    # Out of the canary (as at the switch): the canary Ingress stays, at weight 0 without its header
    # rule, and the stable host sends nothing to the preview Service, header or not. Bad case: a
    # weight-0 canary Ingress that kept `canary-by-header` still sends forced requests to green.
    for manifest in rendered("nginx", 0):
        cluster.apply(manifest)
    wait_for_weights(routed, INGRESS_PROVIDER, cluster.namespace, {STABLE_SERVICE: 100, PREVIEW_SERVICE: 0})
    with ingress(routed, host) as client:
        wait_for(
            lambda: colours(client, 20, headers={CANARY_HEADER: "always"}) == Counter({"blue": 20}),
            timeout_s=APPLY_TIMEOUT_S,
            interval_s=0.5,
            what="the header rule gone with the canary",
        )
        served = colours(client, REQUESTS)
    assert served == Counter({"blue": REQUESTS}), served


def service_request_counts(env: dict[str, str]) -> dict[str, float]:
    """`traefik_service_requests_total` summed per `service` label, from the router's metrics entry
    point (ROUTER_METRICS_HOST:ROUTER_METRICS_PORT, the address the stack's Prometheus scrapes)."""
    url = f"http://{env['ROUTER_METRICS_HOST']}:{env['ROUTER_METRICS_PORT']}/metrics"
    response = httpx.get(url, timeout=NO_HANG_TIMEOUT_S)
    response.raise_for_status()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "traefik_service_requests_total":
                counts[sample.labels["service"]] += sample.value
    return dict(counts)


def test_metrics_entry_point_counts_requests_per_service(
    routed: dict[str, str], cluster: Cluster, backends: dict[str, ColourServer]
) -> None:
    """The router's series are on its metrics entry point, one `traefik_service_requests_total` per
    leaf Service it sent requests to, under the names the stack's Prometheus keeps (infra
    monitoring.router_service_regex). Seen on Traefik v3.7.13, namespace immune-staging:
    Gateway API `httproute-immune-staging-immune-core-gw-<gateway ns>-<gateway>-ep-gateway-<i>-<hash>-svc-
    immune-staging-immune-core-0@kubernetesgateway` (stable; the last number is the backendRef's index)
    and `...-svc-immune-staging-immune-core-preview-1@kubernetesgateway`; ingress-nginx
    `immune-staging-immune-core-immune-core-http@kubernetesingressnginx` (stable) and `...-http-canary@...`
    (the canary Ingress's backend, named after the primary's); the baseline's leaf in the stable route
    `...-svc-immune-staging-immune-core-baseline-2@kubernetesgateway`. Bad case: the admin entry point
    (127.0.0.1 only) no longer serves /metrics."""
    # A canary at 20 % with a fresh baseline (20 % of the stable host, taken from stable's 80 %); the
    # baseline's Service answers as the blue backend does (it runs the stable release).
    cluster.service(BASELINE_SERVICE, backends["blue"])
    routes = rendered("gateway", 20, baseline=1)
    for route in routes:
        cluster.apply(route)
    wait_for_weights(routed, GATEWAY_PROVIDER, cluster.namespace, {STABLE_SERVICE: 60, PREVIEW_SERVICE: 20})
    host = next(r for r in routes if r["metadata"]["name"] == STABLE_SERVICE)
    with gateway(routed, host["spec"]["hostnames"][0]) as client:
        assert set(colours(client, 200)) == {"blue", "green"}
    ingresses = rendered("nginx", 10)
    for manifest in ingresses:
        cluster.apply(manifest)
    wait_for_weights(routed, INGRESS_PROVIDER, cluster.namespace, {STABLE_SERVICE: 90, PREVIEW_SERVICE: 10})
    stable_ingress = next(item for item in ingresses if item["metadata"]["name"] == STABLE_SERVICE)
    with ingress(routed, stable_ingress["spec"]["rules"][0]["host"]) as client:
        assert colours(client, 20, headers={CANARY_HEADER: "always"}) == Counter({"green": 20})
        assert "blue" in colours(client, 40)  # 90 % stable: 40 misses have odds 1e-40
    counts = service_request_counts(routed)
    print("router service labels:", sorted(counts))
    keep = re.compile(router_service_regex(cluster.namespace))
    kept = {name: value for name, value in counts.items() if keep.fullmatch(name)}
    ns = re.escape(cluster.namespace)
    expected = {
        "gateway stable": rf".+-svc-{ns}-{re.escape(STABLE_SERVICE)}-\d+@{GATEWAY_PROVIDER}",
        "gateway preview": rf".+-svc-{ns}-{re.escape(PREVIEW_SERVICE)}-\d+@{GATEWAY_PROVIDER}",
        "gateway baseline": rf".+-svc-{ns}-{re.escape(BASELINE_SERVICE)}-\d+@{GATEWAY_PROVIDER}",
        "nginx stable": rf"{ns}-{re.escape(STABLE_SERVICE)}-.+-http@{INGRESS_PROVIDER}",
        "nginx canary": rf"{ns}-{re.escape(STABLE_SERVICE)}-.+-http-canary@{INGRESS_PROVIDER}",
    }
    for what, pattern in expected.items():
        assert any(re.fullmatch(pattern, name) and value > 0 for name, value in kept.items()), (what, counts)
    # Another namespace's Services are not kept by the stack's filter.
    assert not keep.fullmatch(next(iter(kept)).replace(cluster.namespace, "other-ns"))
    admin = httpx.get(f"http://127.0.0.1:{routed['ROUTER_ADMIN_PORT']}/metrics", timeout=NO_HANG_TIMEOUT_S)
    assert admin.status_code == 404, admin.text[:200]


def test_blue_green_switch_moves_every_request(
    routed: dict[str, str], cluster: Cluster, backends: dict[str, ColourServer]
) -> None:
    routes = rendered("gateway", 0)
    for route in routes:
        cluster.apply(route)
    stable = next(route for route in routes if route["metadata"]["name"] == STABLE_SERVICE)
    wait_for_weights(routed, GATEWAY_PROVIDER, cluster.namespace, {STABLE_SERVICE: 100})
    try:
        with gateway(routed, stable["spec"]["hostnames"][0]) as client:
            assert colours(client, 100) == Counter({"blue": 100})
            # activeColor green moves the stable Service's selector; the EndpointSlice controller then
            # rewrites its slice to the green pods. The route itself does not change.
            cluster.service(STABLE_SERVICE, backends["green"])
            deadline = time.monotonic() + APPLY_TIMEOUT_S
            while time.monotonic() < deadline and client.get("/").text != "green":
                time.sleep(0.2)
            assert colours(client, 200) == Counter({"green": 200})
    finally:
        cluster.service(STABLE_SERVICE, backends["blue"])


def test_down_never_signals_a_process_that_is_not_the_router(tmp_path: Path) -> None:
    """A stale PID file (the router died, its PID was reused) must not get another process killed."""
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        env = {**os.environ, "AIC_CLUSTER_STATE": str(tmp_path)}
        pid_file = tmp_path / "router" / "router.pid"
        pid_file.parent.mkdir(parents=True)
        pid_file.write_text(f"{bystander.pid}\n")
        assert router("status", env).returncode == 3
        stopped = router("down", env)
        assert stopped.returncode == 0, stopped.stderr
        assert bystander.poll() is None, "router.sh down signalled a process that is not the router"
        assert not pid_file.exists()
    finally:
        bystander.kill()
        bystander.wait()
