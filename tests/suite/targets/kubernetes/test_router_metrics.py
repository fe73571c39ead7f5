"""The router's per-Service counters on the cluster (router_metrics.py, KubernetesTarget.ingress_counters)
and the router series of the metric checks, read from a real local HTTP server serving Traefik's page."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from immune_infra.immune_app import COLOR_LABEL

from immune_suite.gates.attribution import IngressCounters, counter_deltas
from immune_suite.metrics.checks import TRAEFIK_RESPONSES, queries
from immune_suite.stack_config import MetricsConfig, load_stack
from immune_suite.targets.base import Color, Release, TargetError
from immune_suite.targets.kubernetes import KubernetesTarget, KubernetesTargetOptions, router_metrics
from tests.suite.targets.kubernetes.support import ApiServer, kubeconfig

NS = "immune-staging"
# Seen live (tests/cluster/test_router.py): `<route>-svc-<ns>-<Service>-<backend index>@kubernetesgateway`.
ROUTE = (
    "httproute-immune-staging-immune-core-gw-immune-gateway-immune-gateway-ep-gateway-1-5dfd3e7cabcfd72ee1d8"
)
STABLE_LEAF = f"{ROUTE}-svc-{NS}-immune-core-0@kubernetesgateway"
PREVIEW_LEAF = f"{ROUTE}-svc-{NS}-immune-core-preview-1@kubernetesgateway"
BASELINE_LEAF = f"{ROUTE}-svc-{NS}-immune-core-baseline-2@kubernetesgateway"


def page(lines: list[str]) -> bytes:
    """A metrics page in Traefik's shape (Go client: HELP/TYPE, `_total` counters, no `_created`)."""
    head = [
        "# HELP traefik_service_requests_total How many HTTP requests processed on a service, partitioned by status code, protocol, and method.",  # noqa: E501
        "# TYPE traefik_service_requests_total counter",
    ]
    retries = [
        "# HELP traefik_service_retries_total How many request retries happened on a service.",
        "# TYPE traefik_service_retries_total counter",
    ]
    requests = [line for line in lines if line.startswith("traefik_service_requests_total")]
    retried = [line for line in lines if line.startswith("traefik_service_retries_total")]
    return ("\n".join([*head, *requests, *retries, *retried]) + "\n").encode()


def requests(service: str, code: int, count: int, method: str = "POST") -> str:
    return (
        f'traefik_service_requests_total{{code="{code}",method="{method}",protocol="http",'
        f'service="{service}"}} {count}'
    )


TRAFFIC = [
    requests(STABLE_LEAF, 202, 900),
    requests(STABLE_LEAF, 200, 50, "GET"),
    requests(PREVIEW_LEAF, 202, 90),
    requests(PREVIEW_LEAF, 500, 4),  # the candidate's own crash
    requests(PREVIEW_LEAF, 502, 6),  # the router could not get an answer from a candidate pod
    requests(BASELINE_LEAF, 202, 88),
    # Another stack's Services on the same router, and the router's own API: not ours.
    requests(f"{ROUTE}-svc-immune-prod-immune-core-preview-1@kubernetesgateway", 502, 1000),
    requests("api@internal", 200, 7, "GET"),
    f'traefik_service_retries_total{{service="{PREVIEW_LEAF}"}} 3',
]


def test_the_routers_page_becomes_counters_per_service_of_the_namespace() -> None:
    counters = router_metrics.per_service(page(TRAFFIC).decode(), NS)
    assert counters == {
        "immune-core": IngressCounters(responses=950),
        # 500 is the service's 5xx; 502 the router's own failure; a retry is a failure it saw.
        "immune-core-preview": IngressCounters(responses=100, responses_5xx=10, failures=9),
        "immune-core-baseline": IngressCounters(responses=88),
    }
    grouped = router_metrics.per_group(counters, {"immune-core": "blue", "immune-core-preview": "green"})
    assert grouped["green"] == IngressCounters(100, 10, 9) and grouped["blue"] == IngressCounters(950)
    assert grouped["baseline"] == IngressCounters(88)


def test_ingress_nginx_names_map_to_the_services_too() -> None:
    # Traefik's ingress-nginx provider: `<ns>-<Ingress>-<Service>-<port>`, the stable host's canary
    # `...-canary` (names seen live on the local cluster, tests/cluster/test_router.py).
    lines = [
        requests(f"{NS}-immune-core-immune-core-http@kubernetesingressnginx", 202, 10),
        requests(f"{NS}-immune-core-immune-core-http-canary@kubernetesingressnginx", 502, 2),
        requests(f"{NS}-immune-core-preview-immune-core-preview-http@kubernetesingressnginx", 200, 5),
        requests("immune-prod-immune-core-immune-core-http@kubernetesingressnginx", 202, 10),
    ]
    counters = router_metrics.per_service(page(lines).decode(), NS)
    assert counters == {
        "immune-core": IngressCounters(10),
        "immune-core-preview": IngressCounters(responses=7, responses_5xx=2, failures=2),
    }


@pytest.mark.parametrize(
    "text",
    [
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1\n",  # not per-service metrics
        "",  # an empty page: nothing counted is not "nothing sent"
        'traefik_service_requests_total{code="200" 5\n',  # broken exposition
    ],
)
def test_a_page_without_per_service_counters_is_an_error(text: str) -> None:
    with pytest.raises(TargetError):
        router_metrics.per_service(text, NS)


def test_an_unreadable_router_page_is_an_error() -> None:
    server = ApiServer()
    try:
        server.answer("/metrics", b"oops", status=500)
        with pytest.raises(TargetError, match="unreadable"):
            router_metrics.fetch(f"{server.url}/metrics")
    finally:
        server.close()
    with socket.socket() as probe:  # a port nothing listens on: the router is down
        probe.bind(("127.0.0.1", 0))
        down = probe.getsockname()[1]
    with pytest.raises(TargetError, match="unreadable"):
        router_metrics.fetch(f"http://127.0.0.1:{down}/metrics", timeout_s=2)


def target_against(
    server: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str
) -> KubernetesTarget:
    config = kubeconfig(tmp_path / "kubeconfig", server.url)
    options = KubernetesTargetOptions(
        stack="staging",
        engine_env={},
        extra_env={"KUBECONFIG": config},
        router_metrics_url=f"{server.url}/metrics",
    )
    target = KubernetesTarget(options)
    outputs = {"namespace": NS, "routingMode": "gateway", **extra}
    monkeypatch.setattr(target, "outputs", lambda: outputs)
    return target


def serve_selectors(server: ApiServer, stable: str, preview: str) -> None:
    for name, colour in (("immune-core", stable), ("immune-core-preview", preview)):
        server.answer(
            f"/api/v1/namespaces/{NS}/services/{name}",
            {"kind": "Service", "spec": {"selector": {"app": "immune-core", COLOR_LABEL: colour}}},
        )


def test_the_target_reads_the_routers_counters_per_colour_over_a_window(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = ApiServer()
    try:
        serve_selectors(server, "blue", "green")
        target = target_against(server, tmp_path, monkeypatch)
        server.answer("/metrics", page([requests(STABLE_LEAF, 202, 100), requests(PREVIEW_LEAF, 202, 10)]))
        before = target.ingress_counters()
        server.answer(
            "/metrics",
            page(
                [
                    requests(STABLE_LEAF, 202, 190),
                    requests(PREVIEW_LEAF, 202, 15),
                    requests(PREVIEW_LEAF, 502, 5),
                ]
            ),
        )
        after = target.ingress_counters()
        assert before is not None and after is not None
        # What the pipeline records for the step: the router's own view of who failed.
        assert counter_deltas(before, after) == {
            "blue": {"responses": 90, "responses_5xx": 0, "failures": 0},
            "green": {"responses": 10, "responses_5xx": 5, "failures": 5},
        }
        # Bad case: the router's page is gone: the step cannot claim the router's view.
        server.answer("/metrics", b"not found", status=404)
        with pytest.raises(TargetError, match="unreadable"):
            target.ingress_counters()
    finally:
        server.close()
    # Without a router metrics URL there are no counters (None), never an empty "nothing counted".
    plain = KubernetesTarget(KubernetesTargetOptions(stack="staging", engine_env={}))
    monkeypatch.setattr(plain, "outputs", lambda: {"namespace": NS})
    assert plain.ingress_counters() is None


def test_metric_selectors_add_the_routers_series_of_the_colours_services(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = ApiServer()
    try:
        serve_selectors(server, "blue", "green")
        target = target_against(server, tmp_path, monkeypatch, routerScrapeJob="router")
        chosen = target.metric_selectors(Color.GREEN, Release("2.0.0", "abc", "x"))
    finally:
        server.close()
    assert chosen.router is not None and chosen.router_metric == TRAEFIK_RESPONSES
    assert chosen.targets == (chosen.app, f'job="router",namespace="{NS}"')
    regex = re.search(r'service=~"(.*)"$', chosen.router)
    assert regex is not None
    pattern = regex.group(1).replace("\\\\", "\\")
    # PromQL anchors `=~`: the candidate's leaf services match, the stable's and other stacks' do not.
    assert re.fullmatch(pattern, PREVIEW_LEAF)
    assert re.fullmatch(pattern, f"{NS}-immune-core-immune-core-http-canary@kubernetesingressnginx")
    assert re.fullmatch(pattern, f"{NS}-immune-core-preview-immune-core-preview-http@kubernetesingressnginx")
    for other in (
        STABLE_LEAF,
        BASELINE_LEAF,
        PREVIEW_LEAF.replace(NS, "immune-prod"),
        f"{NS}-immune-core-immune-core-http@kubernetesingressnginx",
    ):
        assert not re.fullmatch(pattern, other), other
    built = queries(chosen, MetricsConfig(), 60)
    assert built["router_requests"].startswith(f"sum(increase({TRAEFIK_RESPONSES}{{")
    assert 'code=~"5.."' in built["router_error_ratio"]


def test_the_cluster_stack_reads_the_routers_page() -> None:
    stack = load_stack("cluster")
    assert stack.kubernetes.router_metrics_url is not None
    assert str(stack.kubernetes.router_metrics_url).endswith("/metrics")
