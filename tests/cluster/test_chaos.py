"""The chaos gate FOR REAL on the local cluster (issue 10 item 5): chaostoolkit-kubernetes experiments
(chaos/experiments/kubernetes/) against a staging stack that scripts/cluster-deploy.sh put into the
cluster, run by the pipeline's own gate (`immune_suite.gates.chaos.run_chaos_gate`, one native `chaos
run` per experiment) with the configuration the Kubernetes target gives it for the `cluster` stack
(`KubernetesTarget.chaos_config`: the preview URL through the router, the namespace, the candidate's pod
selector and Deployment) and the cluster's KUBECONFIG. Every effect is checked live with kubectl.

The stack is deployed once for the module, its candidate (the preview colour) at 2 pods: terminating one
must leave the preview serving from the other.

Good cases: the `cluster` stack's experiments pass - a terminated candidate pod is gone and replaced
(two new-or-surviving pods ready, the killed one absent) while the preview keeps answering; Redis
scaled to 0 leaves the candidate's pods alive and unrestarted (503s would be graceful) and every pod
reports Redis "ok" again once it is scaled back (the StatefulSet back at 1 afterwards).
Bad cases, each failing for its stated reason: a terminate whose selector matches no pod (nothing was
terminated, no pod deleted); a scale of a StatefulSet that does not exist (404, Redis untouched); the
candidate's Deployment scaled to 0 after the kill (pods not replaced; the rollback scales it back);
Redis left at 0 (no scale-back, no rollback: the candidate stays ready, by design, but its pods never
report Redis "ok" again; the test scales Redis back itself).

Needs root, the cached cluster build, the Pulumi engine and the images (see test_deploy.py).
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from immune_suite.gates.chaos import resolve_experiment, run_chaos_gate
from immune_suite.paths import REPO_ROOT
from immune_suite.stack_config import load_stack
from immune_suite.targets.base import Color
from immune_suite.targets.factory import make_target
from immune_suite.verdict import Status, Verdict
from tests.app.support import wait_for
from tests.cluster.deploy_support import (
    deploy,
    deploy_env,
    hosts_on_loopback,
    must,
    router_hosts,
    signing_key_pair,
)
from tests.cluster.support import Kube

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

STACK = "staging"
NAMESPACE = f"immune-{STACK}"
CANDIDATE_PODS = 2
# The bad cases need no 40 s watch nor a 2-minute drain to fail: they only shorten how long the
# experiments wait for what never comes.
GIVE_UP = {"alive_observe_s": 5, "recovery_timeout_s": 20, "replacement_timeout_s": 20, "drain_s": 20}


@dataclass(frozen=True)
class ChaosStack:
    kube: Kube
    config: dict[str, Any]  # KubernetesTarget.chaos_config(candidate) of the `cluster` stack
    experiments: tuple[str, ...]  # stacks/cluster.yaml chaos.experiments
    candidate: str  # the preview colour
    digest: str  # the image the program built (sha256:...), promoted by the pipeline test

    def selector(self) -> str:
        return str(self.config["candidate_label_selector"])

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.get("pods", "-n", NAMESPACE, "-l", self.selector())["items"]
        return items

    def ready_pods(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.pods() if _ready(p))

    def statefulset_replicas(self, name: str) -> int:
        return int(self.kube.get("statefulset", name, "-n", NAMESPACE)["spec"]["replicas"])

    def deployment_replicas(self) -> int:
        deployment = self.kube.get("deployment", self.config["candidate_deployment"], "-n", NAMESPACE)
        return int(deployment["spec"]["replicas"])

    def preview_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.config['candidate_url']}/health/ready", timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def settled(self) -> bool:
        """As many candidate pods as its Deployment wants (at least its HPA floor), all ready."""
        wanted = self.deployment_replicas()
        pods = self.pods()
        return wanted >= CANDIDATE_PODS and len(pods) == wanted == len([p for p in pods if _ready(p)])

    def wait_settled(self) -> None:
        """Between tests: the candidate back at its pods, all ready, and serving through the router."""
        wait_for(self.settled, timeout_s=300, interval_s=1, what=f">= {CANDIDATE_PODS} ready candidate pods")
        wait_for(self.preview_ready, timeout_s=180, interval_s=1, what="the preview ready")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return (
        pod["metadata"].get("deletionTimestamp") is None
        and pod["status"].get("phase") == "Running"
        and conditions.get("Ready") == "True"
    )


@pytest.fixture(scope="module")
def chaos_stack(
    cluster: Kube, images: None, router: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChaosStack]:
    overrides = tmp_path_factory.mktemp("chaos-deploy") / "overrides.json"
    # The preview colour's HPA floor (and the Deployment's count) at 2.
    overrides.write_text(json.dumps({"rollout": {"replicas": {"green": CANDIDATE_PODS}}}))
    must(deploy("up", STACK, env={"IMMUNE_DEPLOY_OVERRIDES": str(overrides)}), f"pulumi up {STACK}")
    try:
        outputs = json.loads(must(deploy("outputs", STACK), "outputs"))
        assert outputs["activeColor"] == "blue", outputs["activeColor"]
        hosts = router_hosts(outputs)
        env = deploy_env(STACK)
        with pytest.MonkeyPatch.context() as patch:
            # What `immune-suite promote --stack cluster` runs with (test_promote.py): the deploy
            # script's project copy, backend and passphrase; the cluster's KUBECONFIG, which the `chaos`
            # process inherits (chaostoolkit-kubernetes reads it).
            patch.setenv("IMMUNE_PULUMI_PROJECT_DIR", env["PROJECT"])
            patch.setenv("PULUMI_BACKEND_URL", env["BACKEND_URL"])
            patch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", env["PASSPHRASE_FILE"])
            patch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
            patch.setenv("KUBECONFIG", env["KUBECONFIG"])
            patch.setenv("IMMUNE_STATE_DIR", str(tmp_path_factory.mktemp("chaos-state")))
            patch.setenv("NO_PROXY", "*")
            # The stack's configured signing key (stacks/cluster.yaml): a key pair of this module's.
            patch.delenv("IMMUNE_SIGNING_KEY", raising=False)
            for name, value in signing_key_pair(tmp_path_factory.mktemp("signing")).items():
                patch.setenv(name, value)
            with hosts_on_loopback(hosts, "tests/cluster/test_chaos.py"):
                stack_config = load_stack("cluster")
                config = make_target(stack_config).chaos_config(Color.GREEN)
                assert config["namespace"] == NAMESPACE
                digest = str(outputs["images"][outputs["activeColor"]]).split("@", 1)[1]
                chaos = ChaosStack(cluster, config, stack_config.chaos.experiments, "green", digest)
                chaos.wait_settled()
                yield chaos
    finally:
        must(deploy("destroy", STACK), f"destroy {STACK}")


def _silent(*_: Any, **__: Any) -> None:
    pass


def _gate(
    stack: ChaosStack, out: Path, experiments: list[str], **config: Any
) -> tuple[Verdict, dict[str, dict[str, Any]]]:
    """The chaos gate's verdict, and each experiment's activities by name from its timeline."""
    verdict = run_chaos_gate({**stack.config, **config}, out, experiments, _silent)
    activities = {
        entry["experiment"]: {a["name"]: a for a in entry["activities"]}
        for entry in verdict.details.get("timeline", [])
    }
    return verdict, activities


def _variant(name: str, out: Path, change: Any) -> str:
    """A copy of experiment `name` changed by `change(experiment)` (in place), written under `out`."""
    experiment = json.loads(resolve_experiment(name).read_text(encoding="utf-8"))
    changed = copy.deepcopy(experiment)
    change(changed)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-variant.json"
    path.write_text(json.dumps(changed, indent=2), encoding="utf-8")
    return str(path)


def _activity(experiment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in experiment["method"] if a["name"] == name)


# -- good cases -------------------------------------------------------------------------------------


def test_the_cluster_stack_runs_the_kubernetes_experiments() -> None:
    """What the `cluster` stack's chaos gate runs (and why promotions there leave it off)."""
    stack = load_stack("cluster")
    assert stack.chaos.experiments == ("k8s-terminate-candidate-pod", "k8s-scale-redis-to-zero")
    assert all(resolve_experiment(e).parent.name == "kubernetes" for e in stack.chaos.experiments)


def test_a_terminated_candidate_pod_is_replaced(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    chaos_stack.wait_settled()
    before = chaos_stack.ready_pods()
    verdict, activities = _gate(chaos_stack, tmp_path, ["k8s-terminate-candidate-pod"])
    assert verdict.status is Status.PASS, verdict.summary
    run = activities["k8s-terminate-candidate-pod"]
    killed = run["terminate-one-candidate-pod"]["output"]["affected"]
    assert len(killed) == 1 and killed[0] in before
    measured = {m.name: m.value for m in verdict.measurements}
    assert measured["k8s-terminate-candidate-pod: replacement_s"] is not None
    after = chaos_stack.ready_pods()
    assert killed[0] not in after and len(after) >= len(before)
    assert set(after) - set(before), "no new pod came up"
    assert run["events-during-replacement"]["output"]["ungraceful"] == 0
    assert run["candidate-alive-during-replacement"]["output"] is True


def test_redis_scaled_to_zero_the_candidate_degrades_and_recovers(
    chaos_stack: ChaosStack, tmp_path: Path
) -> None:
    chaos_stack.wait_settled()
    restarts_before = {
        p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"]["containerStatuses"])
        for p in chaos_stack.pods()
    }
    verdict, activities = _gate(chaos_stack, tmp_path, ["k8s-scale-redis-to-zero"])
    assert verdict.status is Status.PASS, verdict.summary
    run = activities["k8s-scale-redis-to-zero"]
    assert run["scale-redis-to-zero"]["output"]["affected"] == [f"{NAMESPACE}/redis: 1 -> 0"]
    assert run["candidate-pods-alive-without-redis"]["output"] is True
    assert run["events-during-outage"]["output"]["ungraceful"] == 0
    assert run["scale-redis-back"]["output"]["affected"] == [f"{NAMESPACE}/redis: 0 -> 1"]
    assert chaos_stack.statefulset_replicas("redis") == 1
    measured = {m.name: m.value for m in verdict.measurements}
    assert measured["k8s-scale-redis-to-zero: reconnect_s"] is not None
    restarts_after = {
        p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"]["containerStatuses"])
        for p in chaos_stack.pods()
    }
    assert restarts_after == restarts_before  # same pods, none restarted by its liveness probe


# -- bad cases --------------------------------------------------------------------------------------


def test_a_terminate_that_matches_no_pod_fails(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    chaos_stack.wait_settled()
    before = chaos_stack.ready_pods()
    nothing = chaos_stack.selector().replace(f"={chaos_stack.candidate}", "=no-such-colour")
    assert nothing != chaos_stack.selector()

    def aim_elsewhere(experiment: dict[str, Any]) -> None:
        # Only the action misses: the steady state still checks the real candidate (and holds).
        _activity(experiment, "terminate-one-candidate-pod")["provider"]["arguments"]["label_selector"] = (
            nothing
        )

    path = _variant("k8s-terminate-candidate-pod", tmp_path / "variant", aim_elsewhere)
    verdict, activities = _gate(chaos_stack, tmp_path / "out", [path], **GIVE_UP)
    assert verdict.status is Status.FAIL
    assert "method action 'terminate-one-candidate-pod' failed" in verdict.summary
    assert f"no pod matched {nothing!r} in {NAMESPACE}: nothing was terminated" in verdict.summary
    run = activities["k8s-terminate-candidate-pod-variant"]
    assert run["candidate-pods-running"]["status"] == "succeeded"  # the steady state was fine
    assert chaos_stack.ready_pods() == before  # nothing was deleted


def test_scaling_a_statefulset_that_does_not_exist_fails(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    chaos_stack.wait_settled()

    def absent(experiment: dict[str, Any]) -> None:
        for name in ("scale-redis-to-zero", "scale-redis-back"):
            _activity(experiment, name)["provider"]["arguments"]["name"] = "redis-absent"
        experiment["rollbacks"] = []

    path = _variant("k8s-scale-redis-to-zero", tmp_path / "variant", absent)
    verdict, _ = _gate(chaos_stack, tmp_path / "out", [path], **GIVE_UP)
    assert verdict.status is Status.FAIL
    assert "method action 'scale-redis-to-zero' failed" in verdict.summary
    assert f"statefulset {NAMESPACE}/redis-absent cannot be read: 404" in verdict.summary
    assert chaos_stack.statefulset_replicas("redis") == 1  # the real one untouched


def test_candidate_pods_not_replaced_fail(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    """The kill, then the candidate's Deployment at 0 (its HPA leaves a Deployment at 0 alone): no
    replacement. The rollback scales it back."""
    chaos_stack.wait_settled()
    deployment = chaos_stack.config["candidate_deployment"]
    replicas = chaos_stack.deployment_replicas()

    def no_replacement(experiment: dict[str, Any]) -> None:
        scale = {
            "type": "action",
            "name": "scale-candidate-deployment-to-zero",
            "provider": {
                "type": "python",
                "module": "immune_chaos.k8s",
                "func": "scale_deployment",
                "arguments": {"name": deployment, "replicas": 0, "ns": "${namespace}"},
            },
        }
        experiment["method"].insert(1, scale)
        experiment["rollbacks"] = [
            {
                "type": "action",
                "name": "scale-candidate-deployment-back",
                "provider": {
                    "type": "python",
                    "module": "immune_chaos.k8s",
                    "func": "ensure_deployment_replicas",
                    "arguments": {"name": deployment, "replicas": CANDIDATE_PODS, "ns": "${namespace}"},
                },
            }
        ]

    path = _variant("k8s-terminate-candidate-pod", tmp_path / "variant", no_replacement)
    verdict, activities = _gate(chaos_stack, tmp_path / "out", [path], **GIVE_UP)
    assert verdict.status is Status.FAIL
    assert "method probe 'candidate-pods-replaced' failed" in verdict.summary
    assert f"pods not replaced within 20s: 0 of {replicas} pods matching" in verdict.summary
    run = activities["k8s-terminate-candidate-pod-variant"]
    assert run["scale-candidate-deployment-to-zero"]["output"]["affected"] == [
        f"{NAMESPACE}/{deployment}: {replicas} -> 0"
    ]
    assert run["scale-candidate-deployment-back"]["status"] == "succeeded"
    assert chaos_stack.deployment_replicas() == CANDIDATE_PODS  # the rollback's work, live


def test_redis_left_at_zero_fails(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    """No scale-back and no rollback: the candidate's pods never report Redis back."""
    chaos_stack.wait_settled()

    def never_back(experiment: dict[str, Any]) -> None:
        experiment["method"] = [a for a in experiment["method"] if a["name"] != "scale-redis-back"]
        experiment["rollbacks"] = []

    path = _variant("k8s-scale-redis-to-zero", tmp_path / "variant", never_back)
    try:
        verdict, activities = _gate(chaos_stack, tmp_path / "out", [path], **GIVE_UP)
        assert chaos_stack.statefulset_replicas("redis") == 0  # really left down
    finally:
        chaos_stack.kube.kubectl("scale", "statefulset", "redis", "-n", NAMESPACE, "--replicas=1")
    assert verdict.status is Status.FAIL
    # The service stays ready without Redis (by design): what never comes is each pod's Redis "ok".
    assert "method probe 'redis-reconnected-seconds' failed" in verdict.summary
    assert "redis not ok on every pod matching" in verdict.summary and "within 20s" in verdict.summary
    run = activities["k8s-scale-redis-to-zero-variant"]
    assert run["scale-redis-to-zero"]["output"]["affected"] == [f"{NAMESPACE}/redis: 1 -> 0"]
    chaos_stack.wait_settled()  # and Redis back, the candidate recovers


# -- the pipeline ------------------------------------------------------------------------------------


def test_a_promotion_runs_the_chaos_gate_on_the_cluster(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    """`immune-suite promote` with the `cluster` stack's chaos gate switched on (and a 2-pod candidate):
    the first promotion runs both experiments between smoke and switch, and promotes. Last in the
    module: the candidate colour becomes the stable one."""
    chaos_stack.wait_settled()
    config = yaml.safe_load((REPO_ROOT / "stacks" / "cluster.yaml").read_text(encoding="utf-8"))
    config["chaos"]["enabled"] = True
    config["replicas"] = CANDIDATE_PODS
    stack_file = tmp_path / "cluster.yaml"
    stack_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [str(REPO_ROOT / ".venv" / "bin" / "immune-suite"), "promote", "--stack", str(stack_file)]
    command += ["--ref", "HEAD", "--image-digest", chaos_stack.digest, "--json"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1800, check=False)
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, output
    payload = json.loads(proc.stdout)
    assert payload["run"]["status"] == "promoted", output
    record = json.loads(Path(payload["record"]).read_text(encoding="utf-8"))
    chaos = next(s for s in record["stages"] if s.get("kind") == "chaos")
    assert chaos["verdict"]["status"] == "pass", chaos["verdict"]["summary"]
    passed = {m["name"]: m["passed"] for m in chaos["verdict"]["measurements"]}
    assert passed["k8s-terminate-candidate-pod: passed"] is True
    assert passed["k8s-scale-redis-to-zero: passed"] is True
    assert chaos_stack.statefulset_replicas("redis") == 1
