"""Deployment rules as pure functions over Kubernetes objects (plain dicts, camelCase as on the wire).

Each rule takes one manifest and returns human-readable violations (empty: compliant). The same
functions are tested directly, run over the mocked program's output in tests/infra, and enforced on
a real engine by the policy pack in infra/policy_pack (`pulumi preview --policy-pack infra/policy_pack`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from immune_infra.config import image_is_pinned

Manifest = dict[str, Any]
Rule = Callable[[Manifest], list[str]]

POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
LONG_RUNNING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
# Env names that carry credentials: they must come from a Secret, never a literal value.
SECRET_ENV_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|CREDENTIAL|DATABASE_URL|REDIS_URL|_AUTH$)", re.I
)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]*:[^/\s@]+@")


def pod_spec(manifest: Manifest) -> Manifest | None:
    kind = manifest.get("kind")
    spec = manifest.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in POD_TEMPLATE_KINDS:
        return (spec.get("template") or {}).get("spec")
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return None


def containers(manifest: Manifest) -> Iterator[tuple[str, Manifest]]:
    """Every container, init containers included, as (description, container)."""
    spec = pod_spec(manifest)
    if spec is None:
        return
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or []:
            yield f"{_ref(manifest)} {group}/{container.get('name', '?')}", container


def _ref(manifest: Manifest) -> str:
    return f"{manifest.get('kind', '?')}/{(manifest.get('metadata') or {}).get('name', '?')}"


def images_pinned(manifest: Manifest) -> list[str]:
    return [
        f"{where}: image {container.get('image')!r} is not pinned (digest or exact tag, never latest)"
        for where, container in containers(manifest)
        if not image_is_pinned(str(container.get("image") or ""))
    ]


def resources_bounded(manifest: Manifest) -> list[str]:
    violations = []
    for where, container in containers(manifest):
        spec = container.get("resources") or {}
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (spec.get(section) or {}).get(resource):
                    violations.append(f"{where}: missing resources.{section}.{resource}")
    return violations


def restricted_security_context(manifest: Manifest) -> list[str]:
    spec = pod_spec(manifest)
    if spec is None:
        return []
    pod_context = spec.get("securityContext") or {}
    violations = []
    for where, container in containers(manifest):
        context = container.get("securityContext") or {}

        def effective(key: str, context: Manifest = context) -> Any:
            return context.get(key, pod_context.get(key))

        if effective("runAsNonRoot") is not True:
            violations.append(f"{where}: runAsNonRoot must be true")
        if effective("runAsUser") == 0:
            violations.append(f"{where}: runAsUser must not be 0")
        if context.get("allowPrivilegeEscalation") is not False:
            violations.append(f"{where}: allowPrivilegeEscalation must be false")
        if context.get("privileged") is True:
            violations.append(f"{where}: privileged containers are forbidden")
        if context.get("readOnlyRootFilesystem") is not True:
            violations.append(f"{where}: readOnlyRootFilesystem must be true")
        dropped = [str(cap).upper() for cap in (context.get("capabilities") or {}).get("drop") or []]
        if "ALL" not in dropped:
            violations.append(f"{where}: capabilities must drop ALL")
        if (context.get("capabilities") or {}).get("add"):
            violations.append(f"{where}: no capabilities may be added")
        seccomp = (effective("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            violations.append(f"{where}: seccompProfile must be RuntimeDefault")
    return violations


def no_host_access(manifest: Manifest) -> list[str]:
    spec = pod_spec(manifest)
    if spec is None:
        return []
    violations = [
        f"{_ref(manifest)}: {field} must not be true"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if spec.get(field) is True
    ]
    violations += [
        f"{_ref(manifest)}: hostPath volume {volume.get('name')!r} is forbidden"
        for volume in spec.get("volumes") or []
        if "hostPath" in volume
    ]
    for where, container in containers(manifest):
        violations += [
            f"{where}: hostPort {port.get('hostPort')} is forbidden"
            for port in container.get("ports") or []
            if port.get("hostPort")
        ]
    return violations


def probes_present(manifest: Manifest) -> list[str]:
    if manifest.get("kind") not in LONG_RUNNING_KINDS:
        return []
    spec = pod_spec(manifest) or {}
    violations = []
    for container in spec.get("containers") or []:
        for probe in ("readinessProbe", "livenessProbe"):
            if not container.get(probe):
                violations.append(f"{_ref(manifest)} containers/{container.get('name')}: missing {probe}")
    return violations


def no_service_account_token(manifest: Manifest) -> list[str]:
    if manifest.get("kind") == "ServiceAccount":
        ok = manifest.get("automountServiceAccountToken") is False
        return [] if ok else [f"{_ref(manifest)}: automountServiceAccountToken must be false"]
    spec = pod_spec(manifest)
    if spec is None or spec.get("automountServiceAccountToken") is False:
        return []
    return [f"{_ref(manifest)}: pods must set automountServiceAccountToken: false"]


def secrets_by_reference(manifest: Manifest) -> list[str]:
    violations = []
    for where, container in containers(manifest):
        for env in container.get("env") or []:
            name = str(env.get("name", ""))
            if "value" not in env:
                continue
            value = str(env.get("value") or "")
            if SECRET_ENV_NAME.search(name):
                violations.append(f"{where}: env {name} carries a credential as a literal; use secretKeyRef")
            elif URL_WITH_PASSWORD.search(value):
                violations.append(f"{where}: env {name} holds a URL with an embedded password")
    return violations


def namespace_restricted(manifest: Manifest) -> list[str]:
    if manifest.get("kind") != "Namespace":
        return []
    level = ((manifest.get("metadata") or {}).get("labels") or {}).get("pod-security.kubernetes.io/enforce")
    if level == "restricted":
        return []
    return [f"{_ref(manifest)}: pod-security.kubernetes.io/enforce must be 'restricted' (is {level!r})"]


def no_external_services(manifest: Manifest) -> list[str]:
    if manifest.get("kind") != "Service":
        return []
    service_type = (manifest.get("spec") or {}).get("type", "ClusterIP")
    if service_type in ("NodePort", "LoadBalancer"):
        return [f"{_ref(manifest)}: type {service_type} bypasses the ingress; use ClusterIP"]
    return []


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    rule: Rule


POLICIES: tuple[Policy, ...] = (
    Policy(
        "images-pinned", "Container images are pinned by digest or exact tag, never latest.", images_pinned
    ),
    Policy(
        "resources-bounded",
        "Every container (init too) sets CPU/memory requests and limits.",
        resources_bounded,
    ),
    Policy(
        "restricted-security-context",
        "Non-root, no privilege escalation, read-only root filesystem, drop ALL, seccomp RuntimeDefault.",
        restricted_security_context,
    ),
    Policy("no-host-access", "No host network/PID/IPC, hostPath volumes or host ports.", no_host_access),
    Policy("probes-present", "Long-running containers have readiness and liveness probes.", probes_present),
    Policy(
        "no-service-account-token",
        "Pods and ServiceAccounts do not automount API tokens.",
        no_service_account_token,
    ),
    Policy(
        "secrets-by-reference",
        "Credentials reach containers only through secretKeyRef.",
        secrets_by_reference,
    ),
    Policy(
        "namespace-restricted",
        "Namespaces enforce Pod Security Standards 'restricted'.",
        namespace_restricted,
    ),
    Policy(
        "no-external-services",
        "Services are ClusterIP; traffic enters through the ingress.",
        no_external_services,
    ),
)


def violations(manifest: Manifest) -> list[str]:
    """All violations of all policies for one object, each prefixed with the policy's name."""
    return [f"[{policy.name}] {message}" for policy in POLICIES for message in policy.rule(manifest)]
