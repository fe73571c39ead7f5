"""The stack's worst-case footprint against its ResourceQuota, in one place.

Worst case: both colours at their HPA maximum plus one surge pod each (RollingUpdate maxSurge 1), the
fresh baseline's pods, every StatefulSet at its replicas, every Deployment and every Job's pod at once.
A pod needs the larger of its containers' sum and its largest init container (init containers run
first), per quota resource (Kubernetes "Resource sharing within containers", the pod's effective
request/limit). Units: `pods` a count, cpu in cores, memory in bytes.

Two readings of the same thing:
- `settings_footprint(settings)`: from the settings alone, so the settings model can refuse a stack
  whose pods the quota would refuse at admission (long after `pulumi up` reported success);
- `workloads_footprint(manifests)`: from the rendered objects (HorizontalPodAutoscalers, pod specs).
tests/infra/test_footprint.py holds the two equal on every stack, which is what keeps the first honest
when a workload is added or resized.

The fixed sizes of the helper containers are declared here and used by the program's workloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from immune_infra.config import COLORS, ComputeResources, QuotaSettings, StackSettings

QUOTA_KEYS: tuple[str, ...] = ("pods", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
# Pods a rolling update of a colour adds above its count (the app Deployments' maxSurge).
SURGE_PODS = 1


def _size(cpu: str, cpu_limit: str, memory: str, memory_limit: str) -> ComputeResources:
    return ComputeResources(
        cpu_request=cpu, cpu_limit=cpu_limit, memory_request=memory, memory_limit=memory_limit
    )


# The migration Job's init container that waits for PostgreSQL.
WAIT_FOR_POSTGRES = _size("10m", "100m", "16Mi", "64Mi")
# The Job that creates the Kafka topics.
KAFKA_TOPICS_JOB = _size("50m", "500m", "256Mi", "384Mi")
KAFKA_EXPORTER = _size("20m", "200m", "32Mi", "128Mi")
# Exporter sidecars in the Redis and PostgreSQL pods.
REDIS_EXPORTER = _size("10m", "100m", "32Mi", "64Mi")
POSTGRES_EXPORTER = _size("10m", "100m", "32Mi", "128Mi")
# The endpoint-discovery sidecar in the Prometheus pod (cluster.dns false: immune_infra.endpoints_sd).
ENDPOINTS_DISCOVERY = _size("10m", "250m", "24Mi", "64Mi")

_SUFFIX = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number (cores or bytes): "250m" -> 0.25, "1Gi" -> 1073741824."""
    text = str(value)
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


def _empty() -> dict[str, float]:
    return dict.fromkeys(QUOTA_KEYS, 0.0)


def _pod(containers: Iterable[ComputeResources], init: Iterable[ComputeResources] = ()) -> dict[str, float]:
    """One pod's quota usage from its containers' and init containers' sizes."""
    return pod_usage(
        [_as_spec(size) for size in containers],
        [_as_spec(size) for size in init],
    )


def _as_spec(size: ComputeResources) -> dict[str, Any]:
    return {
        "resources": {
            "requests": {"cpu": size.cpu_request, "memory": size.memory_request},
            "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit},
        }
    }


def pod_usage(containers: list[Mapping[str, Any]], init: list[Mapping[str, Any]]) -> dict[str, float]:
    """One pod's quota usage (pods = 1) from its container dicts (each with `resources`)."""
    usage = _empty()
    usage["pods"] = 1.0
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            main = sum(quantity(c["resources"][section][resource]) for c in containers)
            first = max((quantity(c["resources"][section][resource]) for c in init), default=0.0)
            usage[f"{section}.{resource}"] = max(main, first)
    return usage


def _add(total: dict[str, float], pod: Mapping[str, float], count: int | float) -> None:
    for key in QUOTA_KEYS:
        total[key] += count * pod[key]


def settings_footprint(settings: StackSettings) -> dict[str, float]:
    """The worst case of `settings` (see the module docstring), from the settings alone."""
    total = _empty()
    app = settings.app
    colour_pods = app.replicas.max + SURGE_PODS
    app_pod = _pod([app.resources])
    for _ in COLORS:
        _add(total, app_pod, colour_pods)
        _add(total, _pod([app.migrate_resources], [WAIT_FOR_POSTGRES]), 1)  # its migration Job
    _add(total, _pod([app.migrate_resources]), 1)  # the activation Job of the active colour
    _add(total, app_pod, settings.rollout.baseline_replicas)
    kafka = settings.kafka
    _add(total, _pod([kafka.resources]), kafka.brokers)
    _add(total, _pod([KAFKA_TOPICS_JOB]), 1)
    _add(total, _pod([KAFKA_EXPORTER]), 1)
    _add(total, _pod([settings.redis.resources, REDIS_EXPORTER]), 1)
    _add(total, _pod([settings.postgres.resources, POSTGRES_EXPORTER]), 1)
    monitoring = settings.monitoring
    if monitoring.mode == "bundled":
        discovery = [ENDPOINTS_DISCOVERY] if monitoring.endpoints_discovery is not None else []
        _add(total, _pod([monitoring.prometheus_resources, *discovery]), 1)
        if monitoring.grafana:
            _add(total, _pod([monitoring.grafana_resources]), 1)
    return total


def workloads_footprint(manifests: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The worst case from rendered objects: a Deployment with a HorizontalPodAutoscaler at its
    maxReplicas plus SURGE_PODS, every other pod template at its `replicas` (a Job's: 1)."""
    from immune_infra.policies import pod_spec

    objects = list(manifests)
    ceilings = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["maxReplicas"] + SURGE_PODS
        for hpa in objects
        if hpa.get("kind") == "HorizontalPodAutoscaler"
    }
    total = _empty()
    for manifest in objects:
        spec = pod_spec(dict(manifest))
        if spec is None:
            continue
        count = ceilings.get(manifest["metadata"]["name"], manifest["spec"].get("replicas", 1))
        _add(total, pod_usage(spec["containers"], spec.get("initContainers") or []), count)
    return total


def quota_hard(quota: QuotaSettings) -> dict[str, float]:
    """The ResourceQuota's limits for QUOTA_KEYS, as numbers."""
    return {
        "pods": float(quota.pods),
        "requests.cpu": quantity(quota.requests_cpu),
        "requests.memory": quantity(quota.requests_memory),
        "limits.cpu": quantity(quota.limits_cpu),
        "limits.memory": quantity(quota.limits_memory),
    }


def _shown(key: str, value: float) -> str:
    if key.endswith("memory"):
        return f"{value / 2**30:.2f}Gi"
    if key.endswith("cpu"):
        return f"{value:.2f} cores"
    return f"{value:g}"


_QUOTA_SETTING = {
    "pods": "quota.pods",
    "requests.cpu": "quota.requestsCpu",
    "requests.memory": "quota.requestsMemory",
    "limits.cpu": "quota.limitsCpu",
    "limits.memory": "quota.limitsMemory",
}


def over_quota(footprint: Mapping[str, float], quota: QuotaSettings) -> list[str]:
    """One line per quota resource the footprint exceeds ("requests.memory 25.20Gi > quota.requestsMemory
    24.00Gi"); empty when it fits."""
    hard = quota_hard(quota)
    return [
        f"{key} {_shown(key, footprint[key])} > {_QUOTA_SETTING[key]} {_shown(key, hard[key])}"
        for key in QUOTA_KEYS
        if footprint[key] > hard[key] + 1e-9
    ]
