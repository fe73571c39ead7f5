"""The pipeline's Kubernetes target on the real engine, in render mode: every traffic move is a config
write plus `pulumi up`, and the rendered manifests change exactly where the rollout says they should.

The tests share one stack and run in order; each ends with the stack back where it started.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from immune_suite.paths import REPO_ROOT
from immune_suite.targets.base import Color, Release, TargetError, TrafficState
from immune_suite.targets.kubernetes import KubernetesTarget
from tests.support.engine import EngineProject, make_project
from tests.support.manifests import Change, Documents, diff, load_rendered, summary

pytestmark = pytest.mark.engine

NAMESPACE = "immune-staging"  # Pulumi.staging.yaml settings.namespace
CANARY_INGRESS = f"Ingress/{NAMESPACE}/immune-core-canary"
STABLE_SERVICE = f"Service/{NAMESPACE}/immune-core"
PREVIEW_SERVICE = f"Service/{NAMESPACE}/immune-core-preview"
GREEN_DEPLOYMENT = f"Deployment/{NAMESPACE}/immune-core-green"
BLUE_DEPLOYMENT = f"Deployment/{NAMESPACE}/immune-core-blue"
GREEN_HPA = f"HorizontalPodAutoscaler/{NAMESPACE}/immune-core-green"
GREEN_JOBS = f"Job/{NAMESPACE}/immune-core-migrate-green-"
FAULT = {"IMMUNE_FAULT_LATENCY_MS": "300", "IMMUNE_FAULT_ERROR_RATIO": "0.25"}
COLOR_LABEL = "immune.vertice.dev/color"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"
HEADER_ANNOTATION = "nginx.ingress.kubernetes.io/canary-by-header"
# Into or out of a canary, the canary Ingress (always declared) changes its weight and its header rule.
CANARY_ROUTE_CHANGES = {
    (CANARY_INGRESS, f"metadata.annotations.{WEIGHT_ANNOTATION}"),
    (CANARY_INGRESS, f"metadata.annotations.{HEADER_ANNOTATION}"),
}
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
    # Weight 0 means no canary route at all: the canary Ingress (kept, so that the switch can order
    # it) has weight 0 and no header rule.
    annotations = rollout.last[CANARY_INGRESS]["metadata"]["annotations"]
    assert annotations[WEIGHT_ANNOTATION] == "0" and HEADER_ANNOTATION not in annotations


def container_env(documents: Documents, deployment: str) -> dict[str, str | None]:
    env = documents[deployment]["spec"]["template"]["spec"]["containers"][0]["env"]
    return {item["name"]: item.get("value") for item in env}


def without_jobs(changes: list[Change], prefix: str) -> set[tuple[str, str]]:
    """The changes other than the colour's migration Jobs (a new image is a new, immutable Job)."""
    jobs = {change.obj for change in changes if change.obj.startswith(prefix)}
    assert all(change.path == "" for change in changes if change.obj in jobs)
    return {(change.obj, change.path) for change in changes if change.obj not in jobs}


def test_refused_requests_leave_the_stack_untouched(rollout: Rollout, engine_project: EngineProject) -> None:
    stack_file = engine_project.stack_file("staging")
    before = stack_file.read_bytes()
    secret = Release(version="9.9.9", ref="HEAD", digest=GREEN_DIGEST, env={"IMMUNE_DATABASE_URL": "x"})
    with pytest.raises(TargetError, match="IMMUNE_DATABASE_URL cannot be overridden per colour"):
        rollout.target.deploy(Color.GREEN, secret)
    bad_ratio = Release(
        version="9.9.9", ref="HEAD", digest=GREEN_DIGEST, env={"IMMUNE_FAULT_ERROR_RATIO": "3"}
    )
    with pytest.raises(TargetError, match="must be a ratio between 0 and 1"):
        rollout.target.deploy(Color.GREEN, bad_ratio)
    with pytest.raises(TargetError, match=r"exceeds app\.replicas\.max"):
        rollout.target.deploy(Color.GREEN, Release("9.9.9", "HEAD", GREEN_DIGEST), replicas=4)
    with pytest.raises(TargetError, match="use scale_down"):
        rollout.target.deploy(Color.GREEN, Release("9.9.9", "HEAD", GREEN_DIGEST), replicas=0)
    with pytest.raises(TargetError, match="blue is the active colour"):
        rollout.target.scale_down(Color.BLUE)
    assert stack_file.read_bytes() == before
    assert diff(rollout.last, rollout.rendered()) == []


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
    assert health.desired_replicas == 2  # staging's app default is 1: the colour's own count wins
    changes = diff(previous, rollout.rendered())
    # Green's image, its IMMUNE_VERSION (the release's), green's HPA floor (2) and green's migration Job;
    # nothing of blue, no traffic.
    assert without_jobs(changes, GREEN_JOBS) == {
        (GREEN_DEPLOYMENT, "spec.template.spec.containers[0].image"),
        (GREEN_DEPLOYMENT, "spec.template.spec.containers[0].env"),
        (GREEN_HPA, "spec.minReplicas"),
    }
    assert container_env(rollout.last, GREEN_DEPLOYMENT)["IMMUNE_VERSION"] == "0.2.0"
    assert rollout.last[GREEN_HPA]["spec"]["minReplicas"] == 2
    green_image = rollout.last[GREEN_DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert green_image.endswith("@" + GREEN_DIGEST)

    # Canary 10 %: only the canary Ingress moves, weighted 10 with its header rule, routing to the preview
    # Service.
    previous = rollout.last
    assert target.set_traffic(Color.BLUE, 10).canary_weight == 10
    changes = diff(previous, rollout.rendered())
    assert summary(changes) == CANARY_ROUTE_CHANGES
    canary = rollout.last[CANARY_INGRESS]
    assert canary["metadata"]["annotations"][WEIGHT_ANNOTATION] == "10"
    assert canary["metadata"]["annotations"][HEADER_ANNOTATION] == "X-Immune-Canary"
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

    # Blue/green switch: the stable Service selects green, the preview Service blue, the canary route
    # drops to 0 (in that order: tests/infra/test_switch_order.py).
    previous = rollout.last
    target.set_traffic(Color.GREEN, 0)
    changes = diff(previous, rollout.rendered())
    assert summary(changes) == {
        (STABLE_SERVICE, f"spec.selector.{COLOR_LABEL}"),
        (PREVIEW_SERVICE, f"spec.selector.{COLOR_LABEL}"),
        *CANARY_ROUTE_CHANGES,
        # The services' side of the switch: the activation Job now names green.
        (f"Job/{NAMESPACE}/immune-core-activate-blue", ""),
        (f"Job/{NAMESPACE}/immune-core-activate-green", ""),
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


def test_fault_injection_canary_aborts_to_stable_and_scales_the_candidate_away(rollout: Rollout) -> None:
    target = rollout.target
    before_all = rollout.rendered()
    snapshot = target.snapshot()
    assert snapshot.extra["replicas"] == {"blue": None, "green": None}
    assert snapshot.extra["env"] == {"blue": {}, "green": {}}

    # A regression canary: the candidate carries fault injection, on its own Deployment only.
    release = Release(version="0.3.0", ref="regression", digest=GREEN_DIGEST, env=FAULT)
    target.deploy(Color.GREEN, release)
    changes = diff(before_all, rollout.rendered())
    assert without_jobs(changes, GREEN_JOBS) == {
        (GREEN_DEPLOYMENT, "spec.template.spec.containers[0].image"),
        (GREEN_DEPLOYMENT, "spec.template.spec.containers[0].env"),
    }
    green_env = container_env(rollout.last, GREEN_DEPLOYMENT)
    assert {name: green_env[name] for name in FAULT} == FAULT
    assert green_env["IMMUNE_VERSION"] == "0.3.0"  # the smoke test's X-Immune-Version
    assert not set(FAULT) & set(container_env(rollout.last, BLUE_DEPLOYMENT))
    for key, job in rollout.last.items():
        if key.startswith("Job/"):
            job_env = {item["name"] for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert not job_env & set(FAULT), f"{key}: migrations never get the faults"
    target.set_traffic(Color.BLUE, 10)
    assert rollout.rendered()[CANARY_INGRESS]["metadata"]["annotations"][WEIGHT_ANNOTATION] == "10"

    # The gate fails: scale_down takes the canary route away first, then the candidate's pods.
    previous = rollout.last
    target.scale_down(Color.GREEN)
    changes = diff(previous, rollout.rendered())
    assert summary(changes) == {
        *CANARY_ROUTE_CHANGES,
        (GREEN_DEPLOYMENT, "spec.replicas"),
        (GREEN_HPA, ""),  # no autoscaler left to scale the aborted colour back up
    }
    assert rollout.last[GREEN_DEPLOYMENT]["spec"]["replicas"] == 0
    assert (
        rollout.last[GREEN_DEPLOYMENT]["spec"]["selector"] == previous[GREEN_DEPLOYMENT]["spec"]["selector"]
    )
    traffic = target.traffic()
    assert traffic is not None and (traffic.active, traffic.canary_weight) == (Color.BLUE, 0)
    health = target.health(Color.GREEN)
    assert (health.deployed, health.desired_replicas) == (False, 0)
    assert target.up().changed is False, "scale_down is converged"

    # Abort: the snapshot puts image, count and env back; the render is byte for byte the one before.
    target.restore(snapshot)
    assert diff(before_all, rollout.rendered()) == []
    assert target.up().changed is False


EARLIER_DIGEST = "sha256:" + "ea" * 32


def test_restore_scales_a_retired_colour_away_again(rollout: Rollout) -> None:
    target = rollout.target
    # A release on green first: what an earlier promotion leaves recorded on the colour it later retires.
    earlier = Release(version="0.3.0", ref="earlier", digest=EARLIER_DIGEST)
    target.deploy(Color.GREEN, earlier)
    before_all = rollout.rendered()
    snapshot_before_all = target.snapshot()

    # Green retired (as after a promotion that moved production to blue): replicas 0, no HPA.
    target.scale_down(Color.GREEN)
    retired = rollout.rendered()
    assert summary(diff(before_all, retired)) == {(GREEN_DEPLOYMENT, "spec.replicas"), (GREEN_HPA, "")}
    snapshot = target.snapshot()
    assert snapshot.extra["replicas"]["green"] == 0
    # Scaled away, but its release stays recorded: what `rollback` goes back to from a fresh runner.
    assert target.recorded_release(Color.GREEN) == earlier and snapshot.releases["green"] is None

    # The next candidate goes to the retired colour: its count returns to the app default (the field
    # is dropped so the re-created HPA owns it) and it runs with its log level override.
    release = Release(version="0.4.0", ref="next", digest=GREEN_DIGEST, env={"IMMUNE_LOG_LEVEL": "DEBUG"})
    health = target.deploy(Color.GREEN, release)
    assert health.deployed and health.desired_replicas == 1
    changes = diff(retired, rollout.rendered())
    env = "spec.template.spec.containers[0].env"
    # The env list: IMMUNE_LOG_LEVEL and IMMUNE_VERSION (the release's) changed in place, or added.
    assert {
        (obj, env if path.startswith(env) else path) for obj, path in without_jobs(changes, GREEN_JOBS)
    } == {
        (GREEN_DEPLOYMENT, "spec.replicas"),
        (GREEN_DEPLOYMENT, "spec.template.spec.containers[0].image"),
        (GREEN_DEPLOYMENT, env),
        (GREEN_HPA, ""),
    }
    green_env = container_env(rollout.last, GREEN_DEPLOYMENT)
    assert (green_env["IMMUNE_LOG_LEVEL"], green_env["IMMUNE_VERSION"]) == ("DEBUG", "0.4.0")
    assert "replicas" not in rollout.last[GREEN_DEPLOYMENT]["spec"]

    # Abort: back to exactly the retired state (the scale-away is its own, last `up`), with the retired
    # colour's release recorded again: what `immune-suite rollback` goes back to from a fresh runner.
    target.restore(snapshot)
    assert diff(retired, rollout.rendered()) == []
    assert target.recorded_release(Color.GREEN) == earlier  # not the aborted 0.4.0, not forgotten
    target.restore(snapshot_before_all)
    assert diff(before_all, rollout.rendered()) == []


BASELINE_DEPLOYMENT = f"Deployment/{NAMESPACE}/immune-core-baseline"
BASELINE_SERVICE = f"Service/{NAMESPACE}/immune-core-baseline"
STABLE_DIGEST = "sha256:" + "5ab1e0" * 10 + "5ab1"


def test_baseline_start_and_stop_add_and_remove_exactly_its_objects(
    rollout: Rollout, engine_project: EngineProject
) -> None:
    target = rollout.target
    before_all = rollout.rendered()
    snapshot = target.snapshot()
    stable = Release(version="0.1.0", ref="stable", digest=STABLE_DIGEST)
    assert not target.baseline_running()
    assert target.endpoints().baseline_url is None

    # Refused before the stack is touched: a release without a pinned digest.
    stack_file = engine_project.stack_file("staging")
    unchanged = stack_file.read_bytes()
    with pytest.raises(TargetError, match="has no image digest"):
        target.start_baseline(Release(version="0.1.0", ref="stable", digest="not-a-digest"))
    assert stack_file.read_bytes() == unchanged
    target.stop_baseline()  # none runs: nothing to do, no write
    assert stack_file.read_bytes() == unchanged

    target.set_traffic(Color.BLUE, 10)
    with_canary = rollout.rendered()

    # Start: exactly the baseline's Deployment and Service appear (nginx: the canary Ingress keeps its
    # single backend; the baseline is reached through its Service, the second load's endpoint).
    target.start_baseline(stable, fresh=True)
    assert summary(diff(with_canary, rollout.rendered())) == {
        (BASELINE_DEPLOYMENT, ""),
        (BASELINE_SERVICE, ""),
    }
    deployment = rollout.last[BASELINE_DEPLOYMENT]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + STABLE_DIGEST)
    assert deployment["spec"]["replicas"] == 1  # as many as the active colour (staging's app minimum)
    assert deployment["spec"]["template"]["metadata"]["labels"][COLOR_LABEL] == "baseline"
    assert rollout.last[BASELINE_SERVICE]["spec"]["selector"][COLOR_LABEL] == "baseline"
    assert rollout.last[STABLE_SERVICE]["spec"]["selector"][COLOR_LABEL] == "blue"
    assert target.baseline_running()
    assert target.endpoints().baseline_url == f"http://immune-core-baseline.{NAMESPACE}.svc.cluster.local"
    traffic = target.traffic()
    assert traffic is not None and (traffic.canary_weight, traffic.baseline_weight) == (10, 0)
    with_baseline = rollout.last

    # Kept as it is when not fresh (no write, nothing to converge); fresh takes it away and back.
    kept = stack_file.read_bytes()
    target.start_baseline(stable)
    assert stack_file.read_bytes() == kept
    assert target.up().changed is False
    target.start_baseline(stable, fresh=True)
    assert diff(with_baseline, rollout.rendered()) == []

    # Stop: exactly its objects go, nothing else moves; a second stop changes nothing.
    target.stop_baseline()
    assert summary(diff(with_baseline, rollout.rendered())) == {
        (BASELINE_DEPLOYMENT, ""),
        (BASELINE_SERVICE, ""),
    }
    assert diff(with_canary, rollout.last) == []
    assert not target.baseline_running()
    stopped = stack_file.read_bytes()
    target.stop_baseline()
    assert stack_file.read_bytes() == stopped

    # An abort with the baseline running: restore takes it away with the canary.
    target.start_baseline(stable)
    assert BASELINE_DEPLOYMENT in rollout.rendered()
    target.restore(snapshot)
    assert diff(before_all, rollout.rendered()) == []
    assert not target.baseline_running()
    assert target.up().changed is False


def checkout_of(engine_project: EngineProject, root: Path, render_dir: Path) -> KubernetesTarget:
    """A second project on the same backend, as a fresh CI checkout: the stack file's encrypted secrets,
    but the committed (old) `settings.rollout`, not the one the first project wrote. Same render
    directory: it is part of the provider's configuration (another one would replace every object)."""
    project = make_project(root)
    stack_file = project / "Pulumi.staging.yaml"
    written = yaml.safe_load(engine_project.stack_file("staging").read_text())
    committed = yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())
    key = "active-immune-core:settings"
    written["config"][key]["rollout"] = committed["config"][key]["rollout"]
    stack_file.write_text(yaml.safe_dump(written))
    options = dataclasses.replace(
        engine_project.target("staging").options, project_dir=project, render_dir=render_dir
    )
    return KubernetesTarget(options)


def test_a_fresh_checkout_takes_its_rollout_state_from_the_stack(
    rollout: Rollout, engine_project: EngineProject, tmp_path: Path
) -> None:
    """Issue 10 item 2: colour, releases and images come from the stack's last update (its `rollout`
    output, in the backend), never from a checked-out Pulumi.<stack>.yaml or a runner's directory."""
    target = rollout.target
    before = target.snapshot()
    with pytest.raises(TargetError, match="is not a git revision"):
        target.deploy(Color.GREEN, Release("2.0.0", "HEAD\nX-Injected: 1", GREEN_DIGEST))
    release = Release("2.0.0", "0123456789abcdef", GREEN_DIGEST)
    target.deploy(Color.GREEN, release, replicas=1)
    target.set_traffic(Color.GREEN, 0)
    try:
        fresh = checkout_of(engine_project, tmp_path, rollout.render_dir)
        # The checked-out file is stale: it still says blue, and knows no release.
        assert fresh._rollout_tree()["activeColor"] == "blue"
        # Bad case, what today's checkouts did: an `up` from that file would move traffic back to blue.
        assert fresh.preview().changed
        # Read from the stack, the truth: green serves release 2.0.0, by digest.
        assert fresh.traffic() == TrafficState(active=Color.GREEN, canary_weight=0)
        assert fresh.release_on(Color.GREEN) == release
        assert fresh.health(Color.GREEN).deployed
        # A run starts by adopting the deployed rollout: then an `up` changes nothing.
        fresh.ensure_running()
        assert fresh._rollout_tree()["activeColor"] == "green"
        assert fresh._rollout_tree()["releases"]["green"]["version"] == "2.0.0"
        assert fresh.up().changed is False
        assert fresh.snapshot() == target.snapshot()
    finally:
        target.restore(before)
    assert target.traffic() == before.traffic
    assert target.snapshot() == before
