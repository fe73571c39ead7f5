"""Chaos Toolkit actions for Kubernetes: chaostoolkit-kubernetes, plus the fault timer and proof of effect.

The experiments under chaos/experiments/kubernetes call these instead of `chaosk8s.*` directly, as
`{"type": "python", "module": "immune_chaos.k8s", "func": ...}`, for two reasons:

- the fault timer of `immune_chaos.local` (recovery probes measure from it) starts when the fault is in
  place: after the pods were deleted, after the StatefulSet was scaled to zero;
- an action that affects nothing fails: `chaosk8s.pod.actions.terminate_pods` returns an empty list
  when the selector matched no pod, and `chaosk8s.statefulset.actions.scale_statefulset` /
  `chaosk8s.deployment.actions.scale_deployment` return nothing at all, even when the workload already
  had that many replicas. These wrappers raise then, and return `{"affected": [...]}` otherwise (the
  chaos gate also rejects an action that reports no effect).

`pods_replaced` is the proof that a terminated pod came back: the pods the fault removed are gone and as
many pods as before match the selector, all Running and ready (asked of the API, not of the URL: the
Service keeps answering from the surviving pods while the replacement starts).

The Kubernetes client is the one chaostoolkit-kubernetes builds (`chaosk8s.create_k8s_api_client`:
KUBECONFIG, in-cluster config, or the `secrets` of the experiment).
"""

from __future__ import annotations

import json
import time
from typing import Any

import urllib3
from chaosk8s import create_k8s_api_client
from chaosk8s.deployment.actions import scale_deployment as chaosk8s_scale_deployment
from chaosk8s.pod.actions import terminate_pods as chaosk8s_terminate_pods
from chaosk8s.statefulset.actions import scale_statefulset as chaosk8s_scale_statefulset
from kubernetes import client

from immune_chaos.local import ChaosActivityError, current_fault, mark_fault, mark_restored, since_restored

__all__ = [
    "dependency_recovery_seconds",
    "ensure_deployment_replicas",
    "ensure_statefulset_replicas",
    "pods_alive",
    "pods_replaced",
    "scale_deployment",
    "scale_statefulset",
    "terminate_pods",
]

POLL_S = 1.0
# The endpoints controller drops a deleted pod from its Services' EndpointSlices within about a second.
ENDPOINTS_TIMEOUT_S = 30.0
ENDPOINTS_POLL_S = 0.1


def terminate_pods(
    label_selector: str,
    ns: str = "default",
    qty: int = 1,
    rand: bool = False,
    grace_period: int = -1,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Delete `qty` pods matching `label_selector` in `ns` (chaosk8s `terminate_pods`), picked at random
    with `rand`, else the first listed; `grace_period` in seconds, -1 for each pod's own grace period.

    The fault is in place once no EndpointSlice of `ns` lists a deleted pod (the Services stopped
    sending to it); then the fault timer starts, with the terminated pods' names and how many pods
    matched before (what `pods_replaced` waits for). Returns {"affected": [pod names], "namespace":
    ns, "out_of_endpoints_s": seconds}; raises ChaosActivityError when no pod was deleted or one stays
    in the endpoints for ENDPOINTS_TIMEOUT_S seconds.
    """
    before = [pod for pod in _pods(label_selector, ns, secrets) if pod.metadata.deletion_timestamp is None]
    deleted = chaosk8s_terminate_pods(
        label_selector=label_selector, ns=ns, qty=qty, rand=rand, grace_period=grace_period, secrets=secrets
    )
    if not deleted:
        raise ChaosActivityError(f"no pod matched {label_selector!r} in {ns}: nothing was terminated")
    out_s = _wait_out_of_endpoints(set(deleted), ns, ENDPOINTS_TIMEOUT_S, secrets)
    mark_fault("terminate-pods", pods=list(deleted), namespace=ns, pods_before=len(before))
    return {"affected": list(deleted), "namespace": ns, "out_of_endpoints_s": out_s}


def _wait_out_of_endpoints(
    pods: set[str], ns: str, timeout_s: float, secrets: dict[str, Any] | None
) -> float:
    """Seconds until no EndpointSlice of `ns` lists one of `pods` any more: the kill has reached the
    Services (what a router routes by), as a local kill waits for its pid to be gone. Raises
    ChaosActivityError after `timeout_s` seconds naming the pods still listed."""
    discovery = client.DiscoveryV1Api(create_k8s_api_client(secrets))
    started = time.monotonic()
    while True:
        listed = {
            endpoint.target_ref.name
            for endpoint_slice in discovery.list_namespaced_endpoint_slice(ns).items
            for endpoint in endpoint_slice.endpoints or []
            if endpoint.target_ref is not None and endpoint.target_ref.name in pods
        }
        if not listed:
            return round(time.monotonic() - started, 3)
        if time.monotonic() - started >= timeout_s:
            raise ChaosActivityError(
                f"terminated pods still in the endpoints of {ns} after {timeout_s:.0f}s: {sorted(listed)}"
            )
        time.sleep(ENDPOINTS_POLL_S)


def _statefulset_replicas(name: str, ns: str, secrets: dict[str, Any] | None) -> int:
    apps = client.AppsV1Api(create_k8s_api_client(secrets))
    try:
        scale = apps.read_namespaced_stateful_set_scale(name, ns)
    except client.ApiException as exc:
        raise ChaosActivityError(
            f"statefulset {ns}/{name} cannot be read: {exc.status} {exc.reason}"
        ) from None
    return int(scale.spec.replicas or 0) if scale.spec is not None else 0


def scale_statefulset(
    name: str,
    replicas: int,
    ns: str = "default",
    watch_label_selector: str = "",
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scale StatefulSet `ns`/`name` to `replicas` (chaosk8s `scale_statefulset`), as a fault or its undoing.

    Scaling to zero starts the fault timer, with the restart counts of the pods matching
    `watch_label_selector` (the candidate's) as the baseline `pods_alive` compares with; scaling up marks
    the fault undone (recovery counts from there). Raises ChaosActivityError when the StatefulSet
    already had `replicas` (nothing would change) or does not report `replicas` afterwards.
    Returns {"affected": ["<ns>/<name>: a -> b"], ...}.
    """
    before = _statefulset_replicas(name, ns, secrets)
    if before == int(replicas):
        raise ChaosActivityError(f"statefulset {ns}/{name} already has {before} replicas: nothing to change")
    chaosk8s_scale_statefulset(name=name, replicas=int(replicas), ns=ns, secrets=secrets)
    after = _statefulset_replicas(name, ns, secrets)
    if after != int(replicas):
        raise ChaosActivityError(
            f"statefulset {ns}/{name} reports {after} replicas after scaling to {replicas}"
        )
    if int(replicas) == 0:
        restarts = (
            {pod.metadata.name: _restarts(pod) for pod in _pods(watch_label_selector, ns, secrets)}
            if watch_label_selector
            else {}
        )
        mark_fault("scale-to-zero", statefulset=name, namespace=ns, replicas_before=before, restarts=restarts)
    else:
        mark_restored(statefulset=name)
    return {"affected": [f"{ns}/{name}: {before} -> {replicas}"], "before": before, "after": after}


def _pods(label_selector: str, ns: str, secrets: dict[str, Any] | None) -> list[Any]:
    core = client.CoreV1Api(create_k8s_api_client(secrets))
    return list(core.list_namespaced_pod(ns, label_selector=label_selector).items)


def _restarts(pod: Any) -> int:
    return sum(int(status.restart_count or 0) for status in (pod.status.container_statuses or []))


def _alive_now(
    label_selector: str, ns: str, baseline: dict[str, int], secrets: dict[str, Any] | None
) -> str | None:
    """None when every pod is alive and unrestarted since the fault, else why not."""
    pods = _pods(label_selector, ns, secrets)
    if not pods:
        return f"no pod matches {label_selector!r} in {ns}"
    for pod in pods:
        name = pod.metadata.name
        if pod.status.phase != "Running":
            return f"{name} is {pod.status.phase}"
        stopped = [
            c.name for c in pod.status.container_statuses or [] if c.state is None or c.state.running is None
        ]
        if stopped:
            return f"{name}: containers not running: {stopped}"
        if baseline and name not in baseline:
            return f"{name} replaced a pod that was there at the fault"
        if _restarts(pod) > baseline.get(name, _restarts(pod)):
            return f"{name} restarted {_restarts(pod) - baseline[name]} time(s) since the fault"
    return None


def pods_alive(
    label_selector: str, ns: str = "default", observe_s: float = 0.0, secrets: dict[str, Any] | None = None
) -> bool:
    """The candidate's processes stayed alive through the fault, observed for `observe_s` seconds.

    Every pod matching `label_selector` is Running with all containers running, none restarted nor
    replaced since the fault (baseline taken by `scale_statefulset(..., watch_label_selector=...)`): the
    kubelet restarts a container whose liveness probe fails, so a process that died or hung without its
    dependency shows as a restart. Readiness does not matter: an unready pod leaves the Service's
    endpoints (the candidate URL then answers 503) but is alive. Asks the Kubernetes API, never the
    candidate URL. Returns True; raises ChaosActivityError with the reason otherwise.
    """
    baseline = dict(current_fault("pods_alive").details.get("restarts") or {})
    deadline = time.monotonic() + float(observe_s)
    while True:
        problem = _alive_now(label_selector, ns, baseline, secrets)
        if problem is not None:
            raise ChaosActivityError(f"candidate not alive during the fault: {problem}")
        if time.monotonic() >= deadline:
            return True
        time.sleep(POLL_S)


def ensure_statefulset_replicas(
    name: str, replicas: int, ns: str = "default", secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Rollback: make sure `ns`/`name` has `replicas` (a no-op, `affected` empty, when it already has)."""
    before = _statefulset_replicas(name, ns, secrets)
    if before == int(replicas):
        return {"affected": [], "before": before, "after": before}
    chaosk8s_scale_statefulset(name=name, replicas=int(replicas), ns=ns, secrets=secrets)
    return {
        "affected": [f"{ns}/{name}: {before} -> {replicas}"],
        "before": before,
        "after": _statefulset_replicas(name, ns, secrets),
    }


def _ready(pod: Any) -> bool:
    """Running, not being deleted, and every container ready (the kubelet's readiness probe passed)."""
    statuses = pod.status.container_statuses or []
    return (
        pod.metadata.deletion_timestamp is None
        and pod.status.phase == "Running"
        and bool(statuses)
        and all(bool(status.ready) for status in statuses)
    )


def pods_replaced(
    label_selector: str,
    ns: str = "default",
    timeout_s: float = 60.0,
    secrets: dict[str, Any] | None = None,
) -> float:
    """Seconds from the fault until the pods it removed were replaced (polled every POLL_S seconds).

    Replaced: none of the pods the fault named still exists, and at least as many pods as matched
    `label_selector` before the fault are Running and ready (`terminate_pods` records both). A
    ReplicaSet that does not recreate them (its Deployment scaled to 0, a pod that cannot start)
    raises ChaosActivityError after `timeout_s` seconds naming what is missing.
    """
    fault = current_fault("pods_replaced")
    gone = set(fault.details.get("pods") or [])
    wanted = int(fault.details.get("pods_before") or 0)
    if not gone or wanted < 1:
        raise ChaosActivityError(f"pods_replaced: the last fault ({fault.kind}) terminated no pod")
    deadline = time.monotonic() + float(timeout_s)
    while True:
        pods = _pods(label_selector, ns, secrets)
        lingering = sorted(gone & {pod.metadata.name for pod in pods})
        ready = [pod.metadata.name for pod in pods if _ready(pod) and pod.metadata.name not in gone]
        if not lingering and len(ready) >= wanted:
            return round(time.monotonic() - fault.at, 3)
        if time.monotonic() >= deadline:
            raise ChaosActivityError(
                f"pods not replaced within {float(timeout_s):.0f}s: {len(ready)} of {wanted} pods matching "
                f"{label_selector!r} in {ns} ready (new: {sorted(ready)})"
                + (f", terminated pods still present: {lingering}" if lingering else "")
            )
        time.sleep(POLL_S)


def _deployment_replicas(name: str, ns: str, secrets: dict[str, Any] | None) -> int:
    apps = client.AppsV1Api(create_k8s_api_client(secrets))
    try:
        scale = apps.read_namespaced_deployment_scale(name, ns)
    except client.ApiException as exc:
        raise ChaosActivityError(
            f"deployment {ns}/{name} cannot be read: {exc.status} {exc.reason}"
        ) from None
    return int(scale.spec.replicas or 0) if scale.spec is not None else 0


def scale_deployment(
    name: str, replicas: int, ns: str = "default", secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Scale Deployment `ns`/`name` to `replicas` (chaosk8s `scale_deployment`).

    Does not start a fault timer of its own: it is the fault that stops a ReplicaSet from replacing
    pods another action removed (its HorizontalPodAutoscaler leaves a Deployment at 0 alone). Raises
    ChaosActivityError when the Deployment does not exist, already had `replicas`, or does not report
    `replicas` afterwards. Returns {"affected": ["<ns>/<name>: a -> b"], "before": a, "after": b}.
    """
    before = _deployment_replicas(name, ns, secrets)
    if before == int(replicas):
        raise ChaosActivityError(f"deployment {ns}/{name} already has {before} replicas: nothing to change")
    chaosk8s_scale_deployment(name=name, replicas=int(replicas), ns=ns, secrets=secrets)
    after = _deployment_replicas(name, ns, secrets)
    if after != int(replicas):
        raise ChaosActivityError(
            f"deployment {ns}/{name} reports {after} replicas after scaling to {replicas}"
        )
    return {"affected": [f"{ns}/{name}: {before} -> {replicas}"], "before": before, "after": after}


def ensure_deployment_replicas(
    name: str, replicas: int, ns: str = "default", secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Rollback: make sure Deployment `ns`/`name` has `replicas` (`affected` empty when it already has)."""
    before = _deployment_replicas(name, ns, secrets)
    if before == int(replicas):
        return {"affected": [], "before": before, "after": before}
    chaosk8s_scale_deployment(name=name, replicas=int(replicas), ns=ns, secrets=secrets)
    return {
        "affected": [f"{ns}/{name}: {before} -> {replicas}"],
        "before": before,
        "after": _deployment_replicas(name, ns, secrets),
    }


def _pod_port(pod: Any, port_name: str) -> int | None:
    for container in pod.spec.containers or []:
        for port in container.ports or []:
            if port.name == port_name:
                return int(port.container_port)
    return None


def _readiness_body(core: Any, pod: Any, ns: str, port_name: str) -> dict[str, Any] | None:
    """The pod's own `GET /health/ready` answer (200 or 503, both JSON), asked through the API server's
    pod proxy; None when the pod has no such port or does not answer."""
    port = _pod_port(pod, port_name)
    if port is None:
        return None
    try:
        raw = core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod.metadata.name}:{port}", ns, "health/ready", _preload_content=False
        ).data
    except client.ApiException as exc:
        raw = exc.body if exc.status == 503 else None
    except (urllib3.exceptions.HTTPError, OSError):  # unreachable: simply not recovered yet
        raw = None
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def dependency_recovery_seconds(
    label_selector: str,
    dependency: str,
    ns: str = "default",
    timeout_s: float = 120.0,
    port_name: str = "http",
    secrets: dict[str, Any] | None = None,
) -> float:
    """Seconds from the dependency's return (`mark_restored`, else the fault) until EVERY pod matching
    `label_selector` reports `dependencies[dependency] == "ok"` on its own `/health/ready`.

    The service stays ready without Redis or Kafka (docs/service.md: events are still stored), so
    readiness alone cannot tell that its client reconnected; each pod's readiness body names each
    dependency's state. Each pod is asked through the API server's pod proxy (port `port_name`), not
    through the candidate URL, which answers from one pod at a time. Raises ChaosActivityError after
    `timeout_s` seconds naming each pod's last state (no pod at all is a failure too).
    """
    current_fault("dependency_recovery_seconds")
    core = client.CoreV1Api(create_k8s_api_client(secrets))
    deadline = time.monotonic() + float(timeout_s)
    while True:
        pods = [pod for pod in _pods(label_selector, ns, secrets) if pod.metadata.deletion_timestamp is None]
        states = {}
        for pod in pods:
            body = _readiness_body(core, pod, ns, port_name)
            deps = body.get("dependencies") if body else None
            states[pod.metadata.name] = deps.get(dependency) if isinstance(deps, dict) else None
        if states and all(state == "ok" for state in states.values()):
            return since_restored("dependency_recovery_seconds")
        if time.monotonic() >= deadline:
            raise ChaosActivityError(
                f"{dependency} not ok on every pod matching {label_selector!r} in {ns} within "
                f"{float(timeout_s):.0f}s: {states or 'no pod'}"
            )
        time.sleep(POLL_S)
