"""A colour's readiness read from the cluster's live status, not assumed from what `pulumi up` awaited.

`pulumi up` returns once the Kubernetes provider saw the Deployment roll out at the count it had then:
a colour scaled up from 0 is "ready" with one pod while its HorizontalPodAutoscaler still has to add
the rest. Here the Deployment and its HPA are read through the Kubernetes API and judged the way
`kubectl rollout status` does (kubectl pkg/polymorphichelpers/rollout_status.go): the controller has
observed the current generation, every replica is updated, none of the old ones is left, and the
updated ones are available. The count wanted is the largest of the Deployment's `spec.replicas`, the
HPA's `status.desiredReplicas` and its `spec.minReplicas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from immune_infra.immune_app import BASELINE_SERVICE, COLOR_LABEL, PREVIEW_SERVICE, STABLE_SERVICE
from kubernetes import client, config
from urllib3.exceptions import HTTPError

from immune_suite.targets.base import TargetError

# Requests to the API server: a slow or unreachable one is a target error, never a hang.
REQUEST_TIMEOUT_S = 10.0
NGINX_CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


@dataclass(frozen=True)
class LiveStatus:
    """Pods of one Deployment: `live` exist, `ready` are updated and available, `desired` are wanted.

    `complete` is kubectl's "successfully rolled out" (and at least one pod wanted); `detail` says why not.
    """

    live: int
    ready: int
    desired: int
    complete: bool
    detail: str


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def judge(deployment: Any, hpa: Any | None) -> LiveStatus:
    """The rollout status of `deployment` (a V1Deployment), its wanted count raised by `hpa` (or None).

    Pure: what `deployment_status` reads from the API, judged without another request.
    """
    generation = _int(deployment.metadata.generation)
    status = deployment.status
    observed = _int(status.observed_generation)
    spec_replicas = _int(deployment.spec.replicas)
    desired = spec_replicas
    if hpa is not None:
        desired = max(
            desired, _int(hpa.status.desired_replicas if hpa.status else 0), _int(hpa.spec.min_replicas)
        )
    live, updated = _int(status.replicas), _int(status.updated_replicas)
    available = _int(status.available_replicas)
    ready = min(updated, available)
    if observed < generation:
        return LiveStatus(live, 0, desired, False, f"generation {generation} not observed yet ({observed})")
    if desired == 0:
        return LiveStatus(live, 0, 0, False, "no replica wanted")
    if updated < desired:
        return LiveStatus(live, ready, desired, False, f"{updated} of {desired} replicas updated")
    if live > updated:
        return LiveStatus(live, ready, desired, False, f"{live - updated} old replicas pending termination")
    if available < updated:
        return LiveStatus(live, ready, desired, False, f"{available} of {updated} updated replicas available")
    return LiveStatus(live, ready, desired, True, f"rolled out: {ready}/{desired} ready (live status)")


def deployment_status(
    name: str, namespace: str, kubeconfig: str | None, timeout_s: float = REQUEST_TIMEOUT_S
) -> LiveStatus:
    """Read Deployment `name` and its HPA of the same name (if any) in `namespace` and judge them.

    `kubeconfig`: a kubeconfig path (None: the default, ~/.kube/config or KUBECONFIG's first file);
    `timeout_s`: per request, in seconds.
    Raises TargetError when the API cannot be reached, refuses the request or the Deployment is missing.
    """
    with _api_client(kubeconfig) as api_client:
        where = f"{namespace}/{name}"
        deployment = _read(
            f"deployment {where}",
            client.AppsV1Api(api_client).read_namespaced_deployment,
            name,
            namespace,
            timeout_s=timeout_s,
        )
        hpa = _read(  # a colour scaled away has no autoscaler
            f"autoscaler {where}",
            client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler,
            name,
            namespace,
            timeout_s=timeout_s,
            missing_ok=True,
        )
    # The client hands back the raw text when an answer is not the JSON of its type.
    if (
        not isinstance(deployment, client.V1Deployment)
        or deployment.metadata is None
        or deployment.spec is None
        or deployment.status is None
        or not (hpa is None or (isinstance(hpa, client.V2HorizontalPodAutoscaler) and hpa.spec is not None))
    ):
        raise TargetError(f"deployment {namespace}/{name}: the API server's answer is malformed")
    return judge(deployment, hpa)


def _api_client(kubeconfig: str | None) -> Any:
    try:
        return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise TargetError(f"no usable kubeconfig ({kubeconfig or 'default'}): {exc}") from exc


def _read(what: str, call: Any, *args: Any, timeout_s: float, missing_ok: bool = False) -> Any:
    """One API read; None for a 404 when `missing_ok`; every other failure a TargetError naming `what`."""
    try:
        return call(*args, _request_timeout=timeout_s)
    except client.ApiException as exc:
        if missing_ok and exc.status == 404:
            return None
        raise TargetError(f"{what}: HTTP {exc.status} {exc.reason}") from exc
    except (HTTPError, OSError) as exc:
        raise TargetError(f"{what}: the API server is unreachable: {exc}") from exc
    except ValueError as exc:
        raise TargetError(f"{what}: the API server's answer is malformed") from exc


def service_colours(
    namespace: str, kubeconfig: str | None, timeout_s: float = REQUEST_TIMEOUT_S
) -> dict[str, str]:
    """`{stable Service: colour, preview Service: colour}` from their live selectors. Raises TargetError
    when a Service is missing, unreadable or selects no colour."""
    with _api_client(kubeconfig) as api_client:
        return _service_colours(api_client, namespace, timeout_s)


def _service_colours(api_client: Any, namespace: str, timeout_s: float) -> dict[str, str]:
    core = client.CoreV1Api(api_client)

    def colour_of(service: str) -> str:
        found = _read(
            f"service {namespace}/{service}",
            core.read_namespaced_service,
            service,
            namespace,
            timeout_s=timeout_s,
        )
        selector = (found.spec.selector or {}) if found is not None and found.spec is not None else {}
        colour = selector.get(COLOR_LABEL)
        if colour not in ("blue", "green"):
            raise TargetError(f"service {namespace}/{service} selects no colour ({selector})")
        return str(colour)

    return {STABLE_SERVICE: colour_of(STABLE_SERVICE), PREVIEW_SERVICE: colour_of(PREVIEW_SERVICE)}


def route_weights(
    namespace: str,
    routing_mode: str,
    kubeconfig: str | None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> dict[str, int]:
    """The stable host's traffic per backend as the routing objects hold it now, keyed
    `<colour or baseline>-<Service>`: what the router is told, read back, not what was asked.

    `gateway`: the weighted rule (the last) of HTTPRoute `immune-core` (Gateway API: a backendRef without
    `weight` weighs 1); `nginx`: the canary Ingress' `canary-weight` (no canary Ingress: 0). Each Service's
    colour is its live selector. Raises TargetError when an object is missing or unreadable.
    """
    with _api_client(kubeconfig) as api_client:
        name_of = {**_service_colours(api_client, namespace, timeout_s), BASELINE_SERVICE: "baseline"}
        stable, preview = name_of[STABLE_SERVICE], name_of[PREVIEW_SERVICE]
        if routing_mode == "gateway":
            route = _read(
                f"httproute {namespace}/{STABLE_SERVICE}",
                client.CustomObjectsApi(api_client).get_namespaced_custom_object,
                "gateway.networking.k8s.io",
                "v1",
                namespace,
                "httproutes",
                STABLE_SERVICE,
                timeout_s=timeout_s,
            )
            try:
                refs = route["spec"]["rules"][-1]["backendRefs"]
                weights = {f"{name_of[ref['name']]}-{ref['name']}": int(ref.get("weight", 1)) for ref in refs}
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise TargetError(
                    f"httproute {namespace}/{STABLE_SERVICE}: unexpected shape ({exc!r})"
                ) from exc
            return weights
        canary = _read(
            f"ingress {namespace}/{STABLE_SERVICE}-canary",
            client.NetworkingV1Api(api_client).read_namespaced_ingress,
            f"{STABLE_SERVICE}-canary",
            namespace,
            timeout_s=timeout_s,
            missing_ok=True,
        )
        annotations = (canary.metadata.annotations or {}) if canary is not None and canary.metadata else {}
        share = int(annotations.get(NGINX_CANARY_WEIGHT, 0)) if canary is not None else 0
        return {f"{stable}-{STABLE_SERVICE}": 100 - share, f"{preview}-{PREVIEW_SERVICE}": share}


def service_url(
    name: str, namespace: str, kubeconfig: str | None, timeout_s: float = REQUEST_TIMEOUT_S
) -> str:
    """`http://<ClusterIP>:<first port>` of Service `namespace/name`: how a process on a cluster node
    reaches it without cluster DNS (kube-proxy routes the node's own traffic to ClusterIPs).

    Raises TargetError when the Service is missing or unreadable, or has no ClusterIP (headless) or port.
    """
    with _api_client(kubeconfig) as api_client:
        found = _read(
            f"service {namespace}/{name}",
            client.CoreV1Api(api_client).read_namespaced_service,
            name,
            namespace,
            timeout_s=timeout_s,
        )
    spec = found.spec if found is not None else None
    address = spec.cluster_ip if spec is not None else None
    ports = (spec.ports or []) if spec is not None else []
    if not address or address == "None" or not ports:
        raise TargetError(f"service {namespace}/{name} has no ClusterIP and port to reach it by")
    return f"http://{address}:{int(ports[0].port)}"
