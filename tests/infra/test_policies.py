"""The policy rules as pure functions, and the policy pack that enforces them on a real engine."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import immune_infra.policies as policies
import pulumi_policy
import pytest
import yaml
from immune_infra.render import REPOSITORY_ROOT, RenderedStack
from pulumi_policy.proxy import unknown_checking_proxy

PACK = REPOSITORY_ROOT / "infra" / "policy_pack"
URL_WITH_CREDENTIALS = "postgresql://u:pw@db:5432/x"  # pragma: allowlist secret


def compliant_deployment() -> dict[str, Any]:
    context = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": "web",
        "image": "ghcr.io/example/web:1.2.3",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}},
        "securityContext": context,
        "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
        "livenessProbe": {"httpGet": {"path": "/", "port": 80}},
        "env": [{"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True},
                    "initContainers": [
                        {key: value for key, value in container.items() if not key.endswith("Probe")}
                        | {"name": "init"}
                    ],
                    "containers": [container],
                },
            },
        },
    }


def mutated(path: list[Any], value: Any, delete: bool = False) -> dict[str, Any]:
    manifest = compliant_deployment()
    target: Any = manifest
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return manifest


CONTAINER = ["spec", "template", "spec", "containers", 0]
INIT = ["spec", "template", "spec", "initContainers", 0]
POD = ["spec", "template", "spec"]


def test_compliant_object_has_no_violations() -> None:
    assert policies.violations(compliant_deployment()) == []


@pytest.mark.parametrize(
    ("manifest", "policy", "fragment"),
    [
        (mutated([*CONTAINER, "image"], "nginx:latest"), "images-pinned", "not pinned"),
        (mutated([*INIT, "image"], "busybox"), "images-pinned", "initContainers/init"),
        (
            mutated([*INIT, "resources"], {}),
            "resources-bounded",
            "initContainers/init: missing resources.requests.cpu",
        ),
        (
            mutated([*CONTAINER, "resources", "limits", "memory"], None, delete=True),
            "resources-bounded",
            "limits.memory",
        ),
        (
            mutated([*CONTAINER, "securityContext", "readOnlyRootFilesystem"], False),
            "restricted-security-context",
            "readOnly",
        ),
        (
            mutated([*CONTAINER, "securityContext", "allowPrivilegeEscalation"], True),
            "restricted-security-context",
            "Escalation",
        ),
        (
            mutated([*CONTAINER, "securityContext", "capabilities"], {"drop": ["NET_RAW"]}),
            "restricted-security-context",
            "drop ALL",
        ),
        (
            mutated([*CONTAINER, "securityContext", "privileged"], True),
            "restricted-security-context",
            "privileged",
        ),
        (
            mutated([*CONTAINER, "securityContext", "runAsUser"], 0),
            "restricted-security-context",
            "runAsUser",
        ),
        (
            mutated([*CONTAINER, "securityContext", "seccompProfile"], {"type": "Unconfined"}),
            "restricted-security-context",
            "seccomp",
        ),
        (mutated([*POD, "hostNetwork"], True), "no-host-access", "hostNetwork"),
        (
            mutated([*POD, "volumes"], [{"name": "docker", "hostPath": {"path": "/var/run"}}]),
            "no-host-access",
            "hostPath",
        ),
        (
            mutated([*CONTAINER, "ports"], [{"containerPort": 80, "hostPort": 80}]),
            "no-host-access",
            "hostPort",
        ),
        (mutated([*CONTAINER, "livenessProbe"], None, delete=True), "probes-present", "livenessProbe"),
        (mutated([*POD, "automountServiceAccountToken"], True), "no-service-account-token", "automount"),
        (
            mutated([*CONTAINER, "env"], [{"name": "DB_PASSWORD", "value": "hunter2"}]),
            "secrets-by-reference",
            "DB_PASSWORD",
        ),
        (
            mutated([*CONTAINER, "env"], [{"name": "UPSTREAM", "value": URL_WITH_CREDENTIALS}]),
            "secrets-by-reference",
            "embedded password",
        ),
    ],
)
def test_each_rule_catches_its_violation(manifest: dict[str, Any], policy: str, fragment: str) -> None:
    found = policies.violations(manifest)
    assert found, "expected a violation"
    assert all(message.startswith(f"[{policy}]") for message in found), found
    assert any(fragment in message for message in found), found


def test_jobs_need_no_probes_but_everything_else() -> None:
    job = compliant_deployment()
    job["kind"], job["apiVersion"] = "Job", "batch/v1"
    del job["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert policies.violations(job) == []
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "migrate"
    assert policies.violations(job)


def test_namespace_and_service_rules() -> None:
    namespace: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "x", "labels": {}},
    }
    assert policies.namespace_restricted(namespace)
    namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "restricted"
    assert policies.namespace_restricted(namespace) == []
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"type": "LoadBalancer"},
    }
    assert policies.no_external_services(service)
    service["spec"]["type"] = "ClusterIP"
    assert policies.no_external_services(service) == []
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}}
    assert policies.no_service_account_token(account)


def test_cronjob_pods_are_inspected() -> None:
    deployment = compliant_deployment()
    cronjob: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": copy.deepcopy(deployment["spec"]["template"])}}},
    }
    assert policies.violations(cronjob) == []
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = "x:latest"
    assert any("images-pinned" in message for message in policies.violations(cronjob))


def _load_pack(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run the pack's entry point with PolicyPack replaced, to capture what it would serve."""
    captured: dict[str, Any] = {}

    def record(name: str, policies: list[Any], **options: Any) -> None:
        captured.update(name=name, policies=policies, **options)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", record)
    runpy.run_path(str(PACK / "__main__.py"), run_name="__main__")
    assert captured["name"] == "active-immune-core"
    assert captured["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
    pack_policies: list[Any] = captured["policies"]
    return pack_policies


def _run_pack(pack: list[Any], resource_type: str, props: dict[str, Any]) -> list[str]:
    reported: list[str] = []
    # The engine hands policies read-only proxies (Mapping/Sequence, not dict/list), as here.
    args = SimpleNamespace(resource_type=resource_type, props=unknown_checking_proxy(copy.deepcopy(props)))
    for policy in pack:
        policy.validate(
            args, lambda message, urn=None, name=policy.name: reported.append(f"{name}: {message}")
        )
    return reported


def test_policy_pack_serves_every_rule_and_enforces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pack = _load_pack(monkeypatch)
    assert [policy.name for policy in pack] == [policy.name for policy in policies.POLICIES]
    assert _run_pack(pack, "kubernetes:apps/v1:Deployment", compliant_deployment()) == []
    bad = mutated([*CONTAINER, "image"], "nginx:latest")
    reported = _run_pack(pack, "kubernetes:apps/v1:Deployment", bad)
    assert len(reported) == 1 and reported[0].startswith("images-pinned:")
    # Non-Kubernetes resources and the provider itself are outside the pack's scope.
    assert _run_pack(pack, "docker:index/image:Image", bad) == []
    assert _run_pack(pack, "pulumi:providers:kubernetes", bad) == []


def test_policy_pack_accepts_the_real_program(monkeypatch: pytest.MonkeyPatch, stack: RenderedStack) -> None:
    pack = _load_pack(monkeypatch)
    for resource in stack.resources:
        assert _run_pack(pack, resource.type, resource.inputs) == [], resource.name


def test_policy_pack_project_file() -> None:
    project = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    venv = (PACK / project["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == (REPOSITORY_ROOT / ".venv").resolve()
    assert Path(venv / "bin" / "python").exists()
