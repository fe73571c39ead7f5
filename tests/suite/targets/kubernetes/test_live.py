"""A colour's readiness from the live status (immune_suite/targets/kubernetes/live.py), issue 10 item 2.

The judgement is kubectl's rollout status plus the HPA's count; the reads go to a real local HTTP server
that answers as the Kubernetes API server would, in its failure modes (missing object, 5xx, malformed
body, slow, down). The real cluster path is exercised by tests/cluster/test_promote.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from immune_infra.immune_app import COLOR_LABEL
from kubernetes import client

from immune_suite.targets.base import TargetError
from immune_suite.targets.kubernetes.live import (
    NGINX_CANARY_WEIGHT,
    deployment_status,
    judge,
    route_weights,
    service_url,
)
from tests.suite.targets.kubernetes.support import ApiServer, kubeconfig

NS, NAME = "immune-staging", "immune-core-green"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
HPA_PATH = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{NAME}"


def deployment(
    replicas: int = 2,
    generation: int = 3,
    observed: int = 3,
    live: int = 2,
    updated: int = 2,
    available: int = 2,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS, "generation": generation},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}},
        },
        "status": {
            "observedGeneration": observed,
            "replicas": live,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "readyReplicas": available,
        },
    }


def hpa(min_replicas: int = 1, desired: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "minReplicas": min_replicas,
            "maxReplicas": 10,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
        },
        "status": {"currentReplicas": 1, "desiredReplicas": desired},
    }


def model(body: dict[str, Any], kind: str) -> Any:
    """The client's own deserialisation of `body` into `kind` (V1Deployment, ...)."""
    return client.ApiClient().deserialize(json.dumps(body), kind, "application/json")


@pytest.mark.parametrize(
    ("dep", "auto", "complete", "ready", "desired", "says"),
    [
        (deployment(), None, True, 2, 2, "rolled out: 2/2 ready"),
        (deployment(observed=2), None, False, 0, 2, "generation 3 not observed yet"),
        (deployment(updated=1, available=1, live=1), None, False, 1, 2, "1 of 2 replicas updated"),
        (deployment(live=3), None, False, 2, 2, "1 old replicas pending termination"),
        (deployment(available=1), None, False, 1, 2, "1 of 2 updated replicas available"),
        # Scaled up from 0: `pulumi up` saw one pod ready; the autoscaler wants three.
        (
            deployment(replicas=1, live=1, updated=1, available=1),
            hpa(3, 3),
            False,
            1,
            3,
            "1 of 3 replicas updated",
        ),
        (deployment(replicas=1, live=1, updated=1, available=1), hpa(1, 4), False, 1, 4, "1 of 4"),
        (deployment(replicas=3, live=3, updated=3, available=3), hpa(3, 3), True, 3, 3, "rolled out"),
        (deployment(replicas=0, live=0, updated=0, available=0), None, False, 0, 0, "no replica wanted"),
    ],
)
def test_the_rollout_is_judged_like_kubectl_with_the_autoscalers_count(
    dep: dict[str, Any],
    auto: dict[str, Any] | None,
    complete: bool,
    ready: int,
    desired: int,
    says: str,
) -> None:
    status = judge(
        model(dep, "V1Deployment"), model(auto, "V2HorizontalPodAutoscaler") if auto is not None else None
    )
    assert (status.complete, status.ready, status.desired) == (complete, ready, desired), status
    assert says in status.detail


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, str]]:
    server = ApiServer()
    try:
        yield server, kubeconfig(tmp_path / "kubeconfig", server.url)
    finally:
        server.close()


def test_a_rolled_out_colour_is_read_from_the_api(api: tuple[ApiServer, str]) -> None:
    server, config = api
    server.answer(DEPLOYMENT_PATH, deployment(replicas=2))
    server.answer(HPA_PATH, hpa(2, 2))
    status = deployment_status(NAME, NS, config)
    assert (status.complete, status.ready, status.desired) == (True, 2, 2)
    assert server.requests[:2] == [DEPLOYMENT_PATH, HPA_PATH]


def test_the_autoscalers_count_holds_readiness_back(api: tuple[ApiServer, str]) -> None:
    server, config = api
    server.answer(DEPLOYMENT_PATH, deployment(replicas=1, live=1, updated=1, available=1))
    server.answer(HPA_PATH, hpa(3, 3))
    status = deployment_status(NAME, NS, config)
    assert not status.complete and (status.ready, status.desired) == (1, 3)


def test_a_colour_without_an_autoscaler_is_judged_on_its_deployment(api: tuple[ApiServer, str]) -> None:
    server, config = api
    server.answer(DEPLOYMENT_PATH, deployment(replicas=1, live=1, updated=1, available=1))
    status = deployment_status(NAME, NS, config)  # the HPA read answers 404
    assert status.complete and status.desired == 1


@pytest.mark.parametrize(
    ("path", "status", "body", "says"),
    [
        (DEPLOYMENT_PATH, 404, b'{"kind":"Status","code":404}', "HTTP 404"),
        (DEPLOYMENT_PATH, 500, b"internal error", "HTTP 500"),
        (HPA_PATH, 503, b"unavailable", "autoscaler"),
        (DEPLOYMENT_PATH, 200, b"<html>not json</html>", "malformed"),
        (DEPLOYMENT_PATH, 200, b'{"kind":"Deployment"}', "malformed"),
    ],
)
def test_api_failures_are_target_errors(
    api: tuple[ApiServer, str], path: str, status: int, body: bytes, says: str
) -> None:
    server, config = api
    server.answer(DEPLOYMENT_PATH, deployment())
    server.answer(path, body, status)
    with pytest.raises(TargetError, match=says):
        deployment_status(NAME, NS, config)


def test_a_slow_api_server_is_a_target_error_not_a_hang(api: tuple[ApiServer, str]) -> None:
    server, config = api
    server.answer(DEPLOYMENT_PATH, deployment())
    server.delay_s = 2.0
    with pytest.raises(TargetError, match="unreachable"):
        deployment_status(NAME, NS, config, timeout_s=0.3)


def test_an_api_server_that_is_down_is_a_target_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    with pytest.raises(TargetError, match="unreachable"):
        deployment_status(NAME, NS, config, timeout_s=2)


def test_a_missing_kubeconfig_is_a_target_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no usable kubeconfig"):
        deployment_status(NAME, NS, str(tmp_path / "absent"))


def service(name: str, colour: str | None) -> dict[str, Any]:
    selector = {"app": "immune-core", **({COLOR_LABEL: colour} if colour else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"selector": selector}}


def route(*refs: tuple[str, int | None]) -> dict[str, Any]:
    backends = [{"name": name, "port": 80, **({"weight": w} if w is not None else {})} for name, w in refs]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "immune-core"},
        "spec": {
            "rules": [
                {"matches": [{"headers": []}], "backendRefs": [{"name": "immune-core-preview"}]},
                {"backendRefs": backends},
            ]
        },
    }


SERVICES = f"/api/v1/namespaces/{NS}/services"
ROUTE_PATH = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/immune-core"
CANARY_PATH = f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/immune-core-canary"


def colours(server: ApiServer, stable: str | None = "blue", preview: str | None = "green") -> None:
    server.answer(f"{SERVICES}/immune-core", service("immune-core", stable))
    server.answer(f"{SERVICES}/immune-core-preview", service("immune-core-preview", preview))


def test_gateway_weights_are_read_back_from_the_live_httproute(api: tuple[ApiServer, str]) -> None:
    server, config = api
    colours(server)
    server.answer(
        ROUTE_PATH, route(("immune-core", 50), ("immune-core-preview", 25), ("immune-core-baseline", 25))
    )
    assert route_weights(NS, "gateway", config) == {
        "blue-immune-core": 50,
        "green-immune-core-preview": 25,
        "baseline-immune-core-baseline": 25,
    }
    # The selectors name the colours: after a switch the stable Service selects green.
    colours(server, stable="green", preview="blue")
    server.answer(ROUTE_PATH, route(("immune-core", None)))  # no weight: Gateway API's default, 1
    assert route_weights(NS, "gateway", config) == {"green-immune-core": 1}


def test_nginx_weights_are_the_canary_ingress_annotation(api: tuple[ApiServer, str]) -> None:
    server, config = api
    colours(server)
    assert route_weights(NS, "nginx", config) == {"blue-immune-core": 100, "green-immune-core-preview": 0}
    server.answer(
        CANARY_PATH,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "immune-core-canary", "annotations": {NGINX_CANARY_WEIGHT: "10"}},
            "spec": {},
        },
    )
    assert route_weights(NS, "nginx", config) == {"blue-immune-core": 90, "green-immune-core-preview": 10}


@pytest.mark.parametrize(
    ("stable", "route_body", "route_status", "says"),
    [
        (None, route(("immune-core", 100)), 200, "selects no colour"),
        ("blue", b'{"kind":"Status","code":404}', 404, "HTTP 404"),
        ("blue", {"kind": "HTTPRoute", "spec": {"rules": []}}, 200, "unexpected shape"),
        ("blue", route(("someone-else", 100)), 200, "unexpected shape"),
    ],
)
def test_routing_objects_that_cannot_be_read_back_are_target_errors(
    api: tuple[ApiServer, str],
    stable: str | None,
    route_body: dict[str, Any] | bytes,
    route_status: int,
    says: str,
) -> None:
    server, config = api
    colours(server, stable=stable)
    server.answer(ROUTE_PATH, route_body, route_status)
    with pytest.raises(TargetError, match=says):
        route_weights(NS, "gateway", config)


def prometheus_service(cluster_ip: str | None, ports: list[int]) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": port} for port in ports]}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "prometheus"}, "spec": spec}


def test_a_service_is_reached_by_its_cluster_ip(api: tuple[ApiServer, str]) -> None:
    server, config = api
    server.answer(f"{SERVICES}/prometheus", prometheus_service("10.96.0.42", [9090, 9091]))
    assert service_url("prometheus", NS, config) == "http://10.96.0.42:9090"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"kind":"Status","code":404}', 404, "HTTP 404"),
        (prometheus_service("None", [9090]), 200, "no ClusterIP"),  # headless
        (prometheus_service(None, [9090]), 200, "no ClusterIP"),
        (prometheus_service("10.96.0.42", []), 200, "no ClusterIP and port"),
    ],
)
def test_a_service_without_an_address_is_a_target_error(
    api: tuple[ApiServer, str], body: dict[str, Any] | bytes, status: int, says: str
) -> None:
    server, config = api
    server.answer(f"{SERVICES}/prometheus", body, status)
    with pytest.raises(TargetError, match=says):
        service_url("prometheus", NS, config)
