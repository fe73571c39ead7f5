"""The declared objects as YAML manifests: Kubernetes schema validation (strict, pinned version),
structural checks of the custom resources, the project's policies, and checkov's curated checks on
the manifests and on app/Dockerfile."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from immune_infra.policies import violations
from immune_infra.render import RenderedStack, write_manifests

from tests.infra.crd_schema import errors as crd_errors
from tests.infra.scan_support import (
    CUSTOM_KINDS,
    DOCKERFILE,
    KUBERNETES_VERSION,
    _check_list,
    _passed_ids,
)
from tests.infra.support import DISCOVERY, render, rollout

# Every variant the program can produce: both stacks, both routing modes, both monitoring modes.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "staging": ("staging", {}),
    "prod": ("prod", {}),
    "staging-canary": ("staging", rollout("green", 10)),
    # With Kayenta's fresh baseline running beside the canary (its Deployment, Service, third backend).
    "prod-gateway-operator": (
        "prod",
        {
            "rollout": {
                **rollout("blue", 50)["rollout"],
                "baseline": {
                    "image": "ghcr.io/active-immune-core/immune-core@sha256:" + "ab" * 32,
                    "replicas": 2,
                },
            },
            "routing": {"mode": "gateway"},
            "monitoring": {"mode": "operator"},
        },
    ),
    # The local cluster: no DNS (ClusterIPs, a Service per broker), no volume provisioner (emptyDir data),
    # Gateway API routing with the published CRDs, and the image built by the program.
    "prod-local-cluster": (
        "prod",
        {
            "cluster": {"dns": False, "persistentVolumes": False},
            "monitoring": {"endpointsDiscovery": DISCOVERY},
            "routing": {"mode": "gateway"},
            "imageBuild": {
                "enabled": True,
                "builder": "engine-api",
                "repository": "127.0.0.1:15000/immune/immune-core",
            },
            "rollout": {"images": {"green": "build"}},
        },
    ),
    # Per-colour rollout config: the old colour scaled away (no HPA), the new one with fault injection.
    "prod-retired-faulty": (
        "prod",
        {
            "rollout": {
                "activeColor": "green",
                "canaryWeight": 0,
                "replicas": {"blue": 0, "green": 4},
                "env": {"green": {"IMMUNE_FAULT_LATENCY_MS": "250", "IMMUNE_LOG_LEVEL": "DEBUG"}},
            }
        },
    ),
}


def variant(name: str) -> RenderedStack:
    stack, overrides = VARIANTS[name]
    return render(stack, overrides)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_manifests_validate_against_kubernetes_schemas(name: str) -> None:
    rendered = variant(name)
    validated = 0
    for manifest in rendered.manifests:
        if manifest["kind"] in CUSTOM_KINDS:
            # The published CRD's own schema (infra/crds/, tests/infra/crd_schema.py).
            assert crd_errors(manifest) == [], manifest["metadata"]["name"]
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        validated += 1
    assert validated >= 40


def test_schema_validation_rejects_a_broken_object(staging: RenderedStack) -> None:
    broken = json.loads(json.dumps(staging.find("Deployment", "immune-core-blue")))
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_manifests_satisfy_the_policies(name: str) -> None:
    found = [message for manifest in variant(name).manifests for message in violations(manifest)]
    assert found == []


def test_manifests_round_trip_through_yaml_files(tmp_path: Path, prod: RenderedStack) -> None:
    paths = write_manifests(prod, tmp_path)
    assert len(paths) == len(prod.manifests)
    loaded = [yaml.safe_load(path.read_text()) for path in paths]
    assert sorted(json.dumps(m, sort_keys=True) for m in loaded) == sorted(
        json.dumps(m, sort_keys=True) for m in prod.manifests
    )


@pytest.mark.slow
def test_checkov_kubernetes_zero_failures_on_curated_checks(tmp_path: Path) -> None:
    for name in VARIANTS:
        write_manifests(variant(name), tmp_path / name)
    checks = _check_list()["kubernetes"]
    skips = ",".join(checks["skips"])
    passed = _passed_ids("--directory", str(tmp_path), "--framework", "kubernetes", "--skip-check", skips)
    assert set(checks["checks"]) <= passed, f"curated checks that never ran: {set(checks['checks']) - passed}"
    assert not set(checks["skips"]) & passed


@pytest.mark.slow
def test_checkov_dockerfile_zero_failures_on_curated_checks() -> None:
    if not DOCKERFILE.exists():
        pytest.fail("app/Dockerfile is missing: the image build option points at it")
    checks = _check_list()["dockerfile"]
    args = ["--file", str(DOCKERFILE), "--framework", "dockerfile"]
    if checks["skips"]:
        args += ["--skip-check", ",".join(checks["skips"])]
    passed = _passed_ids(*args)
    assert set(checks["checks"]) <= passed, f"curated checks that never ran: {set(checks['checks']) - passed}"


def test_every_skip_has_a_reason() -> None:
    data = _check_list()
    for framework in ("kubernetes", "dockerfile"):
        for check_id, reason in (data[framework]["skips"] or {}).items():
            assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check_id)
            assert isinstance(reason, str) and len(reason) > 60, check_id
        assert not set(data[framework]["skips"] or {}) & set(data[framework]["checks"])


def test_dockerfile_base_images_are_pinned() -> None:
    """What CKV_DOCKER_7 cannot see through `FROM ${ARG}`: resolve ARG defaults, require exact tags."""
    text = DOCKERFILE.read_text()
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    stages: set[str] = set()
    images = []
    for source, alias in re.findall(
        r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.M | re.I
    ):
        image = re.sub(r"\$\{?(\w+)\}?", lambda match: defaults.get(match.group(1), match.group(0)), source)
        if image not in stages:
            images.append(image)
        if alias:
            stages.add(alias)
    assert images
    for image in images:
        assert "$" not in image, f"unresolved build argument in FROM {image}"
        tag = image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or (":" in tag and not tag.endswith(":latest")), image
