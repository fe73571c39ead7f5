"""The pipeline's Kubernetes target on the real engine, in render mode: every traffic move is a config
write plus `pulumi up`, and the rendered manifests change exactly where the rollout says they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.conftest import EngineProject
from engine.manifests import Documents, diff, load_rendered, summary
from immune_suite.targets.base import Color, Release, TargetError
from immune_suite.targets.kubernetes import KubernetesTarget

pytestmark = pytest.mark.engine

NAMESPACE = "immune-staging"  # Pulumi.staging.yaml settings.namespace
CANARY_INGRESS = f"Ingress/{NAMESPACE}/immune-core-canary"
STABLE_SERVICE = f"Service/{NAMESPACE}/immune-core"
PREVIEW_SERVICE = f"Service/{NAMESPACE}/immune-core-preview"
GREEN_DEPLOYMENT = f"Deployment/{NAMESPACE}/immune-core-green"
COLOR_LABEL = "immune.vertice.dev/color"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"
GREEN_DIGEST = "sha256:" + "c0ffee" * 10 + "c0ff"


class Rollout:
    """The target plus its render directory, remembering the last render to diff against."""

    def __init__(self, target: KubernetesTarget, render_dir: Path) -> None:
        self.target = target
        self.render_dir = render_dir
        self.last: Documents = {}

    def rendered(self) -> Documents:
        self.last = load_rendered(self.render_dir)
        return self.last


@pytest.fixture(scope="module")
def rollout(engine_project: EngineProject) -> Rollout:
    render_dir = engine_project.root / "render" / "target-staging"
    target = engine_project.target("staging", render_dir=render_dir)
    target.ensure_running()
    outcome = target.up()
    assert outcome.changed, "the first up must create the stack's resources"
    state = Rollout(target, render_dir)
    state.rendered()
    return state


def test_initial_state_is_read_from_the_stack_exports(rollout: Rollout) -> None:
    traffic = rollout.target.traffic()
    assert traffic is not None
    assert (traffic.active, traffic.canary_weight) == (Color.BLUE, 0)
    endpoints = rollout.target.endpoints()
    assert endpoints.stable_url.startswith("http")
    assert endpoints.preview_url != endpoints.stable_url
    token = rollout.target.api_token()
    assert token and len(token) >= 24
    assert CANARY_INGRESS not in rollout.last, "weight 0 means no canary route at all"


def test_release_env_overrides_are_refused_not_dropped(rollout: Rollout) -> None:
    fault = {"IMMUNE_FAULT_LATENCY_MS": "300"}
    release = Release(version="9.9.9", ref="HEAD", digest=GREEN_DIGEST, env=fault)
    with pytest.raises(TargetError, match="env overrides"):
        rollout.target.deploy(Color.GREEN, release)


def test_canary_steps_blue_green_switch_and_abort(rollout: Rollout) -> None:
    target = rollout.target
    before_all = rollout.last
    snapshot = target.snapshot()
    assert snapshot.traffic is not None and snapshot.traffic.active is Color.BLUE

    # Deploy the candidate to the idle colour: only green's workload changes, traffic does not move.
    release = Release(version="0.2.0", ref="candidate", digest=GREEN_DIGEST)
    previous = rollout.last
    health = target.deploy(Color.GREEN, release, replicas=2)
    assert health.deployed and health.release == release
    assert health.ready_replicas == 0 and "render mode" in health.detail, "nothing runs in render mode"
    assert "2 requested" in health.detail  # staging declares settings.app.replicas.min 1
    changes = diff(previous, rollout.rendered())
    changed_objects = {change.obj for change in changes}
    assert GREEN_DEPLOYMENT in changed_objects
    assert not any(obj.startswith(f"Deployment/{NAMESPACE}/immune-core-blue") for obj in changed_objects)
    assert STABLE_SERVICE not in changed_objects and PREVIEW_SERVICE not in changed_objects
    green_image = rollout.last[GREEN_DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert green_image.endswith("@" + GREEN_DIGEST)

    # Canary 10 %: exactly one new object, the canary Ingress, weighted 10, routing to the preview Service.
    previous = rollout.last
    assert target.set_traffic(Color.BLUE, 10).canary_weight == 10
    changes = diff(previous, rollout.rendered())
    assert summary(changes) == {(CANARY_INGRESS, "")}
    canary = rollout.last[CANARY_INGRESS]
    assert canary["metadata"]["annotations"][WEIGHT_ANNOTATION] == "10"
    backend = canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "immune-core-preview"

    # 50 % then 100 %: only the weight annotation moves.
    for weight in (50, 100):
        previous = rollout.last
        target.set_traffic(Color.BLUE, weight)
        changes = diff(previous, rollout.rendered())
        assert summary(changes) == {(CANARY_INGRESS, f"metadata.annotations.{WEIGHT_ANNOTATION}")}
        assert changes[0].after == str(weight)
        assert target.traffic() is not None and target.traffic().canary_weight == weight  # type: ignore[union-attr]

    # Blue/green switch: the stable Service selects green, the preview Service blue, the canary route goes.
    previous = rollout.last
    target.set_traffic(Color.GREEN, 0)
    changes = diff(previous, rollout.rendered())
    assert summary(changes) == {
        (STABLE_SERVICE, f"spec.selector.{COLOR_LABEL}"),
        (PREVIEW_SERVICE, f"spec.selector.{COLOR_LABEL}"),
        (CANARY_INGRESS, ""),
    }
    by_obj = {change.obj: change for change in changes}
    assert (by_obj[STABLE_SERVICE].before, by_obj[STABLE_SERVICE].after) == ("blue", "green")
    assert (by_obj[PREVIEW_SERVICE].before, by_obj[PREVIEW_SERVICE].after) == ("green", "blue")

    # Abort: restore the snapshot taken before the promotion; the render is exactly as it was.
    target.restore(snapshot)
    assert diff(before_all, rollout.rendered()) == []
    restored = target.traffic()
    assert restored is not None and (restored.active, restored.canary_weight) == (Color.BLUE, 0)
    assert target.up().changed is False, "after restore the stack is converged"
