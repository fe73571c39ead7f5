"""Pieces every workload shares: the restricted security contexts, resources, labels, child options.

Pod Security Standards `restricted` is enforced on the namespace, so every pod and container the
program declares is built from these functions rather than repeating the fields (and forgetting one).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import ComputeResources

# A UID/GID above the host's range (checkov CKV_K8S_40) that no official image's user collides with.
RESTRICTED_UID = 10001
PART_OF = "active-immune-core"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
# No pod gets the automounted ServiceAccount token. The one caller of the Kubernetes API (Prometheus's
# endpoint discovery without DNS, immune_infra.monitoring) mounts a projected token in its sidecar only.
MOUNT_API_TOKEN = False
# Scratch space inside the container: an emptyDir mounted there, not the node's /tmp.
TMP_PATH = "/tmp"  # noqa: S108  # nosec B108


def labels(name: str, component: str, **extra: str) -> dict[str, str]:
    """Selector-safe labels: never include anything that changes over a workload's life."""
    return {NAME_LABEL: name, COMPONENT_LABEL: component, PART_OF_LABEL: PART_OF, **extra}


def pod_security_context(fs_group: bool = True) -> k8s.core.v1.PodSecurityContextArgsDict:
    context: k8s.core.v1.PodSecurityContextArgsDict = {
        "run_as_non_root": True,
        "run_as_user": RESTRICTED_UID,
        "run_as_group": RESTRICTED_UID,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }
    if fs_group:
        # Lets the non-root user write to freshly provisioned volumes without a root chown init step.
        context["fs_group"] = RESTRICTED_UID
        context["fs_group_change_policy"] = "OnRootMismatch"
    return context


def container_security_context() -> k8s.core.v1.SecurityContextArgsDict:
    return {
        "allow_privilege_escalation": False,
        "privileged": False,
        "read_only_root_filesystem": True,
        "run_as_non_root": True,
        "run_as_user": RESTRICTED_UID,
        "run_as_group": RESTRICTED_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def resources(spec: ComputeResources) -> k8s.core.v1.ResourceRequirementsArgsDict:
    return {
        "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
        "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
    }


def secret_env(name: str, secret_name: pulumi.Input[str], key: str) -> k8s.core.v1.EnvVarArgsDict:
    """An env var read from a Secret at pod start: the value never appears in the pod spec."""
    return {"name": name, "value_from": {"secret_key_ref": {"name": secret_name, "key": key}}}


def plain_env(name: str, value: pulumi.Input[str]) -> k8s.core.v1.EnvVarArgsDict:
    return {"name": name, "value": value}


def field_env(name: str, field_path: str) -> k8s.core.v1.EnvVarArgsDict:
    return {"name": name, "value_from": {"field_ref": {"field_path": field_path}}}


def empty_dir(name: str, size_limit: str = "64Mi") -> k8s.core.v1.VolumeArgsDict:
    """Writable scratch space: the root filesystem of every container is read-only."""
    return {"name": name, "empty_dir": {"size_limit": size_limit}}


def mount(
    name: str, path: str, read_only: bool = False, sub_path: str | None = None
) -> k8s.core.v1.VolumeMountArgsDict:
    volume_mount: k8s.core.v1.VolumeMountArgsDict = {"name": name, "mount_path": path, "read_only": read_only}
    if sub_path is not None:
        volume_mount["sub_path"] = sub_path
    return volume_mount


def content_hash(*parts: Any, length: int = 10) -> str:
    """A short stable digest of configuration, used to roll pods (or name Jobs) when it changes."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:length]


def volume_claim(
    name: str, size: str, storage_class: str | None
) -> k8s.core.v1.PersistentVolumeClaimArgsDict:
    spec: k8s.core.v1.PersistentVolumeClaimSpecArgsDict = {
        "access_modes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class is not None:
        spec["storage_class_name"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def data_claims(
    persistent: bool, size: str, storage_class: str | None
) -> list[k8s.core.v1.PersistentVolumeClaimArgsDict]:
    """A StatefulSet's `data` claim template, or none when the cluster has no volume provisioner
    (`cluster.persistentVolumes: false`; `with_data` then gives the pod an emptyDir instead)."""
    return [volume_claim("data", size, storage_class)] if persistent else []


def with_data(
    pod_spec: k8s.core.v1.PodSpecArgsDict, persistent: bool, size: str
) -> k8s.core.v1.PodSpecArgsDict:
    """`pod_spec` unchanged, or (no persistent volumes) with an emptyDir `data` volume of at most `size`:
    the data then lives as long as the pod."""
    if persistent:
        return pod_spec
    volumes = [*pod_spec.get("volumes", []), empty_dir("data", size)]
    return {**pod_spec, "volumes": volumes}


def child_options(
    parent: pulumi.Resource, provider: k8s.Provider, depends_on: list[pulumi.Resource] | None = None
) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=depends_on or [])


def service_dns(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def service_address(service: k8s.core.v1.Service, name: str, namespace: str, dns: bool) -> pulumi.Output[str]:
    """Where clients reach a Service: its cluster DNS name, or (`cluster.dns: false`, no CoreDNS) the
    ClusterIP the API server allocated, an Output known once the Service exists."""
    if dns:
        return pulumi.Output.from_input(service_dns(name, namespace))
    address: pulumi.Output[str] = service.spec.apply(lambda spec: _allocated_ip(spec, name))
    return address


def _allocated_ip(spec: Any, name: str) -> str:
    address = getattr(spec, "cluster_ip", None) if spec is not None else None
    if not address or address == "None":
        raise ValueError(f"Service {name} has no ClusterIP: cluster.dns false needs ClusterIP Services")
    return str(address)


def single_pod_statefulset(
    service_name: str,
    pod_labels: dict[str, str],
    pod_spec: k8s.core.v1.PodSpecArgsDict,
    persistent: bool,
    size: str,
    storage_class: str | None,
) -> k8s.apps.v1.StatefulSetSpecArgsDict:
    """The spec of a one-replica StatefulSet (PostgreSQL, Redis) behind Service `service_name`, its pods
    labelled `pod_labels`, whose `data` volume (`size`, a Kubernetes quantity such as "10Gi") is a claim
    of `storage_class`, or an emptyDir when the cluster has no persistent volumes (`data_claims`,
    `with_data`)."""
    return {
        "service_name": service_name,
        "replicas": 1,
        "selector": {"match_labels": pod_labels},
        "template": {"metadata": {"labels": pod_labels}, "spec": with_data(pod_spec, persistent, size)},
        "volume_claim_templates": data_claims(persistent, size, storage_class),
    }


def exporter_container(
    name: str,
    image: str,
    env: list[k8s.core.v1.EnvVarArgsDict],
    port: int,
    health_path: str,
    size: ComputeResources,
) -> k8s.core.v1.ContainerArgsDict:
    """A Prometheus exporter sidecar: serves port `port` as `metrics`, probed over HTTP on `health_path`,
    with its fixed `size` (immune_infra.footprint: counted against the quota there)."""
    return {
        "name": name,
        "image": image,
        "image_pull_policy": "IfNotPresent",
        "env": env,
        "ports": [{"name": "metrics", "container_port": port}],
        "readiness_probe": {"http_get": {"path": health_path, "port": "metrics"}},
        "liveness_probe": {
            "http_get": {"path": health_path, "port": "metrics"},
            "initial_delay_seconds": 20,
            "period_seconds": 30,
        },
        "resources": resources(size),
        "security_context": container_security_context(),
    }
