"""`pulumi preview` and `pulumi up` of the real program for both stacks, rendering manifests to a directory.

The manifests are the engine's real output (the Kubernetes provider's renderYamlToDirectory); they go
through the same schema validation and checkov checks as the mocked program's, and a second `up`
with nothing changed must report no changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes_validate
import pytest
from immune_infra.policies import violations

from immune_suite.targets.kubernetes import KubernetesTarget, UpOutcome
from tests.infra.crd_schema import errors as crd_errors
from tests.infra.scan_support import (
    CUSTOM_KINDS,
    KUBERNETES_VERSION,
    _check_list,
    _passed_ids,
)
from tests.support.engine import STACKS, EngineProject
from tests.support.manifests import Documents, load_rendered

# The schema checks and the curated checkov list are the mocked program's (tests/infra), imported.
pytestmark = pytest.mark.engine

EXPECTED_BROKERS = {"staging": 1, "prod": 3}


@dataclass
class StackRun:
    stack: str
    target: KubernetesTarget
    render_dir: Path
    preview: UpOutcome
    first_up: UpOutcome
    second_up: UpOutcome
    seconds: dict[str, float] = field(default_factory=dict)

    def documents(self) -> Documents:
        return load_rendered(self.render_dir)


def _timed(seconds: dict[str, float], name: str, action: object) -> UpOutcome:
    started = time.monotonic()
    assert callable(action)
    result = action()
    seconds[name] = round(time.monotonic() - started, 1)
    assert isinstance(result, UpOutcome)
    return result


@pytest.fixture(scope="module", params=STACKS)
def stack_run(request: pytest.FixtureRequest, engine_project: EngineProject) -> Iterator[StackRun]:
    stack: str = request.param
    render_dir = engine_project.root / "render" / stack
    target = engine_project.target(stack, render_dir=render_dir)
    seconds: dict[str, float] = {}
    preview = _timed(seconds, "preview", target.preview)
    first = _timed(seconds, "up", target.up)
    second = _timed(seconds, "up (no change)", target.up)
    # Figures for the report (not asserted): how long the real engine takes per stack on this machine.
    print(f"\n[engine] {stack}: " + ", ".join(f"{name} {value}s" for name, value in seconds.items()))
    yield StackRun(stack, target, render_dir, preview, first, second, seconds)


def test_preview_plans_the_whole_stack(stack_run: StackRun) -> None:
    assert stack_run.preview.changes.get("create", 0) > 20, stack_run.preview.changes


def test_up_creates_what_preview_planned(stack_run: StackRun) -> None:
    assert stack_run.first_up.changes.get("create") == stack_run.preview.changes.get("create")


def test_second_up_reports_no_changes(stack_run: StackRun) -> None:
    assert not stack_run.second_up.changed, stack_run.second_up.changes


def test_manifests_are_rendered_for_every_part(stack_run: StackRun) -> None:
    documents = stack_run.documents()
    kinds = {key.split("/", 1)[0] for key in documents}
    for kind in (
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "StatefulSet",
        "Deployment",
        "Service",
        "Ingress",
        "Job",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
        "ConfigMap",
    ):
        assert kind in kinds, f"{stack_run.stack}: no {kind} rendered"
    deployments = {key for key in documents if key.startswith("Deployment/") and "immune-core-" in key}
    assert {key.rsplit("/", 1)[1] for key in deployments} >= {"immune-core-blue", "immune-core-green"}
    # Where prod differs from staging (Pulumi.<stack>.yaml): the Kafka brokers.
    kafka = next(doc for key, doc in documents.items() if key.startswith("StatefulSet/") and "kafka" in key)
    assert kafka["spec"]["replicas"] == EXPECTED_BROKERS[stack_run.stack]


def test_stack_file_carries_ciphertext_not_plaintext(
    stack_run: StackRun, engine_project: EngineProject
) -> None:
    text = engine_project.stack_file(stack_run.stack).read_text(encoding="utf-8")
    assert "encryptionsalt:" in text
    for key, value in engine_project.plaintext_secrets[stack_run.stack].items():
        assert f"active-immune-core:{key}:\n    secure:" in text, key
        assert value not in text


def test_rendered_manifests_validate_against_kubernetes_schemas(stack_run: StackRun) -> None:
    documents = stack_run.documents()
    for key, manifest in documents.items():
        if manifest["kind"] in CUSTOM_KINDS:
            # The published CRD's own schema (infra/crds/).
            assert crd_errors(manifest) == [], f"{stack_run.stack} {key}"
        else:
            try:
                kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{stack_run.stack} {key}: {exc}")
    assert len(documents) >= 40


def test_rendered_manifests_satisfy_the_policies(stack_run: StackRun) -> None:
    found = [message for manifest in stack_run.documents().values() for message in violations(manifest)]
    assert found == []


@pytest.mark.slow
def test_rendered_manifests_pass_checkov_curated_checks(stack_run: StackRun) -> None:
    checks = _check_list()["kubernetes"]
    skips = ",".join(checks["skips"])
    passed = _passed_ids(
        "--directory", str(stack_run.render_dir), "--framework", "kubernetes", "--skip-check", skips
    )
    assert set(checks["checks"]) <= passed, f"curated checks that never ran: {set(checks['checks']) - passed}"
