"""`immune-suite promote --stack cluster` END TO END on the local cluster (issue 10 item 1).

The staging Pulumi stack is deployed once for the module (scripts/cluster-deploy.sh), then the real
pipeline (immune_suite/pipeline, immune_suite/targets/kubernetes/) promotes releases of the image the
program built, in a subprocess, as an operator would: the target drives the deploy script's project
copy, backend and passphrase; the gates' requests go through the router (Traefik) to the stack's host
names, which this module maps to 127.0.0.1 in /etc/hosts while it runs (stacks/cluster.yaml sets the
router's port). Everything is checked live: the HTTPRoute's weights, the Service selector, each
colour's Deployment, and the colour/version of responses sent through the router.

Good cases: a first promotion (exit 0, signed record that `immune-suite verify` accepts); a canary
promotion of a second release through 10 %, 50 % and 100 % (stacks/cluster.yaml; weights seen on the
live HTTPRoute while the run moves them; at 100 % the comparison load goes to the fresh baseline's
ClusterIP; every step also judged on the stack's own Prometheus) ending with the candidate stable and
the old colour scaled away. That second release goes through the promote workflow's own job scripts
(issue 10 item 7): scripts/ci/build-image.sh builds and pushes HEAD's image once (offline, with the
images daemon), scripts/ci/promote.sh promotes its digest, verifies the record and writes the report.
Bad cases: a tampered record is refused by `verify` (exit 7); a candidate failing 30 % of its API
requests (IMMUNE_FAULT_ERROR_RATIO) and one 500 ms slower (IMMUNE_FAULT_LATENCY_MS, caught by the first
canary step while it holds 10 % of the live route) are rolled back with exit 3 (gate failed): stable
at 100 % on the route, only the stable colour answers, the candidate at 0 pods; so is a run an
operator aborts (`immune-suite abort`) while its canary holds 10 % of the route (exit 4).

Needs root, the cached cluster build, the Pulumi engine and the images (see test_deploy.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from immune_infra.immune_app import COLOR_LABEL, HTTP_PORT, color_labels

from immune_suite.paths import REPO_ROOT
from immune_suite.stack_config import load_stack
from tests.app.support import wait_for
from tests.cluster.deploy_support import (
    deploy,
    deploy_env,
    hosts_on_loopback,
    must,
    router_hosts,
    signing_key_pair,
)
from tests.cluster.support import Kube, read_versions

# A cold cluster, image build and deploy come before the first promotion (module-scoped fixtures).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

STACK = "staging"
STACK_CONFIG = "cluster"  # stacks/cluster.yaml: the pipeline stack promoted here
NAMESPACE = f"immune-{STACK}"
STABLE_ROUTE = "immune-core"
SUITE = REPO_ROOT / ".venv" / "bin" / "immune-suite"
PROMOTE_TIMEOUT_S = 1800
# The canary's weights as the stack declares them (issue 10: 10/50/100): the tests follow the config.
STEPS: list[int] = list(load_stack(STACK_CONFIG).canary.steps)
FIRST_STEP = STEPS[0]


@dataclass(frozen=True)
class Promotion:
    """One `immune-suite promote --json` run: its exit code and final payload (record, run, ...)."""

    code: int
    payload: dict[str, Any]
    output: str


@dataclass(frozen=True)
class Stack:
    router: str  # http://127.0.0.1:<gateway port>
    stable_host: str
    digest: str  # the image the program built (sha256:...), promoted as every release here
    repository: str  # where the program deploys from (settings.imageBuild.repository)
    env: dict[str, str]  # the promote subprocess's environment


@pytest.fixture(scope="module")
def stack(
    cluster: Kube, images: None, router: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    port = int(read_versions()["ROUTER_GATEWAY_PORT"])
    for ref in ("HEAD", "HEAD~1"):  # the releases of this module, fixed now
        commit_of(ref)
    assert router == f"http://127.0.0.1:{port}"
    must(deploy("up", STACK), f"pulumi up {STACK}")
    try:
        outputs = json.loads(must(deploy("outputs", STACK), "outputs"))
        hosts = router_hosts(outputs)
        repository, digest = str(outputs["images"][outputs["activeColor"]]).split("@", 1)
        env = deploy_env(STACK)
        promote_env = {
            **os.environ,
            # The run store, records, signing key and releases file of these runs only.
            "IMMUNE_STATE_DIR": str(tmp_path_factory.mktemp("promote-state")),
            "IMMUNE_PULUMI_PROJECT_DIR": env["PROJECT"],
            "PULUMI_BACKEND_URL": env["BACKEND_URL"],
            "PULUMI_CONFIG_PASSPHRASE_FILE": env["PASSPHRASE_FILE"],
            "KUBECONFIG": env["KUBECONFIG"],
            "NO_PROXY": "*",
            # The stack's configured signing key (stacks/cluster.yaml): a key pair of this module's.
            **signing_key_pair(tmp_path_factory.mktemp("signing")),
        }
        promote_env.pop("PULUMI_CONFIG_PASSPHRASE", None)
        promote_env.pop("IMMUNE_SIGNING_KEY", None)
        with hosts_on_loopback(hosts, "tests/cluster/test_promote.py"):
            yield Stack(router, hosts[0], digest, repository, promote_env)
    finally:
        must(deploy("destroy", STACK), f"destroy {STACK}")


def suite(stack: Stack, *args: str) -> Promotion:
    proc = subprocess.run(
        [str(SUITE), *args, "--json"],
        capture_output=True,
        text=True,
        env=stack.env,
        cwd=REPO_ROOT,
        timeout=PROMOTE_TIMEOUT_S,
        check=False,
    )
    try:  # with --json the result is one JSON document on stdout (progress goes to stderr)
        final = json.loads(proc.stdout)
    except ValueError:
        final = {}
    return Promotion(proc.returncode, final, (proc.stdout + proc.stderr)[-6000:])


def promote(stack: Stack, ref: str, *extra: str, stack_config: str = "cluster") -> Promotion:
    return suite(
        stack,
        "promote",
        "--stack",
        stack_config,
        "--ref",
        commit_of(ref),
        "--image-digest",
        stack.digest,
        *extra,
    )


def job_script(name: str, *args: str, env: dict[str, str]) -> str:
    """Run scripts/ci/<name> as the workflow does; its stdout, or the test fails with its output."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ci" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=PROMOTE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"{name} exit {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc.stdout


@functools.cache
def commit_of(ref: str) -> str:
    """The commit `ref` names, resolved once: a commit made in this checkout while the module runs must
    not change which release a later test expects."""
    commit = subprocess.run(
        ["git", "rev-parse", ref], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return commit.stdout.strip()


def version_of(ref: str) -> str:
    return commit_of(ref)[:10]


def route_weights(kube: Kube) -> list[tuple[str, int]]:
    route = kube.get("httproute", STABLE_ROUTE, "-n", NAMESPACE)
    return [(ref["name"], int(ref.get("weight", 1))) for ref in route["spec"]["rules"][-1]["backendRefs"]]


def selector_colour(kube: Kube) -> str:
    return str(kube.get("service", "immune-core", "-n", NAMESPACE)["spec"]["selector"][COLOR_LABEL])


def deployment_replicas(kube: Kube, colour: str) -> int:
    deployments = kube.get("deployments", "-n", NAMESPACE)["items"]
    counts = [
        int(item["spec"].get("replicas", 0))
        for item in deployments
        if item["spec"]["selector"]["matchLabels"].get(COLOR_LABEL) == colour
    ]
    assert counts, f"no Deployment of colour {colour}: {[d['metadata']['name'] for d in deployments]}"
    return sum(counts)


def served(stack: Stack, requests: int) -> Counter[tuple[str, str, int]]:
    """(colour, version, status) of `requests` GET /health/live sent through the router to the stable host."""
    seen: Counter[tuple[str, str, int]] = Counter()
    with httpx.Client(base_url=stack.router, headers={"Host": stack.stable_host}, timeout=30) as client:
        for _ in range(requests):
            response = client.get("/health/live")
            key = (response.headers.get("x-immune-color", "-"), response.headers.get("x-immune-version", "-"))
            seen[(*key, response.status_code)] += 1
    return seen


def only(stack: Stack, colour: str, version: str) -> bool:
    return set(served(stack, 20)) == {(colour, version, 200)}


def pod_gauges(kube: Kube, colour: str, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Each Running app pod of `colour`: the gauges `names` from its own /metrics (API server pod proxy)."""
    selector = f"{COLOR_LABEL}={colour},app.kubernetes.io/component=api"
    found: dict[str, dict[str, float]] = {}
    for pod in kube.get("pods", "-n", NAMESPACE, "-l", selector)["items"]:
        if pod["status"].get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            continue
        name = pod["metadata"]["name"]
        path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:{HTTP_PORT}/proxy/metrics"
        page = kube.kubectl("get", "--raw", path, check=False)
        if page.returncode != 0:
            continue  # not serving yet: no sample
        gauges = {
            line.split()[0]: float(line.split()[1])
            for line in page.stdout.splitlines()
            if line.split(" ", 1)[0] in names
        }
        found[name] = gauges
    return found


IDLE_GAUGES = ("immune_deployment_live", "immune_leader")


class RouteWatch:
    """Polls the stable HTTPRoute's weights (every second) while a promotion runs: what it saw, in order.

    With `idle`, the colour a canary runs on: while the route gives it a share strictly between 0 and
    100 % (read before and after, so never at the switch), each of its pods' `immune_deployment_live` and
    `immune_leader`: the idle colour of issue 10 item 3, seen on the cluster (`idle_samples`)."""

    def __init__(self, kube: Kube, idle: str | None = None) -> None:
        self.kube = kube
        self.idle = idle
        self.seen: list[list[tuple[str, int]]] = []
        self.idle_samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            weights = route_weights(self.kube)
            if not self.seen or self.seen[-1] != weights:
                self.seen.append(weights)
            if self.idle is not None and _mid_canary(weights):
                gauges = pod_gauges(self.kube, self.idle, IDLE_GAUGES)
                if _mid_canary(route_weights(self.kube)):
                    self.idle_samples += [g for g in gauges.values() if set(g) == set(IDLE_GAUGES)]
            time.sleep(1)

    def __enter__(self) -> RouteWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _mid_canary(weights: list[tuple[str, int]]) -> bool:
    return 0 < dict(weights).get("immune-core-preview", 0) < sum(w for _, w in weights)


def active_colour(cluster: Kube) -> str:
    return selector_colour(cluster)


def test_first_promotion_of_a_good_release(cluster: Kube, stack: Stack, tmp_path: Path) -> None:
    before = active_colour(cluster)
    version = version_of("HEAD~1")
    # With the security gate on (off in the other promotions for time): the candidate's source
    # scanners before deploy, then the API fuzzer against its preview host through the router.
    config = yaml.safe_load((REPO_ROOT / "stacks" / f"{STACK_CONFIG}.yaml").read_text())
    config["security"] = {"enabled": True, "fuzz_api": True}
    secured = tmp_path / "cluster-security.yaml"
    secured.write_text(yaml.safe_dump(config))
    run = promote(stack, "HEAD~1", stack_config=str(secured))
    assert run.code == 0, run.output
    record = json.loads(Path(run.payload["record"]).read_text())
    gates = {stage["kind"]: stage["verdict"] for stage in record["stages"]}
    # WARN, not FAIL: the vendored advisory snapshot is older than 90 days and accepted by
    # security/advisories/policy.yaml (the gate says so); every scanner really scanned.
    security, fuzz = gates["security"], gates["api_fuzz"]
    assert security["status"] in ("pass", "warn") and security["measurements"], security["summary"]
    tools = security["details"]["tools"]
    assert tools["bandit"]["files_scanned"] > 0 and not tools["bandit"]["errors"], tools["bandit"]
    assert tools["checkov"]["results"]["kubernetes"]["resources"] == tools["checkov"]["expected"]["resources"]
    assert fuzz["status"] == "pass" and fuzz["measurements"], fuzz["summary"]
    candidate = "green" if before == "blue" else "blue"
    assert run.payload["run"]["status"] == "promoted", run.payload
    # Live: the candidate's colour is the stable Service's, alone on the route, answering as the release.
    assert selector_colour(cluster) == candidate
    assert route_weights(cluster) == [("immune-core", 100)]
    wait_for(lambda: only(stack, candidate, version), timeout_s=120, interval_s=1, what="candidate stable")
    assert set(served(stack, 100)) == {(candidate, version, 200)}

    verified = suite(stack, "verify", "latest", "--stack", "cluster")
    assert verified.code == 0 and verified.payload["valid"] is True, verified.output
    # A signed record that no longer matches its content is refused (the check can fail).
    record["outcome"] = "tampered"
    tampered = Path(run.payload["record"]).with_name("tampered.json")
    tampered.write_text(json.dumps(record))
    refused = suite(stack, "verify", str(tampered))
    assert refused.code == 7 and refused.payload["valid"] is False, refused.output
    # Signed with the configured key and checked against the stack's public key (IMMUNE_KEYS_DIR here,
    # stacks/keys/ in CI), not the one the record embeds: under another key pair the same record fails.
    other_keys = dataclasses.replace(stack, env={**stack.env, **signing_key_pair(tmp_path / "other")})
    foreign = suite(other_keys, "verify", "latest", "--stack", "cluster")
    assert foreign.code == 7 and foreign.payload["valid"] is False, foreign.output


def test_canary_promotion_of_a_second_release_through_the_workflow_jobs(
    cluster: Kube, stack: Stack, tmp_path: Path
) -> None:
    stable = active_colour(cluster)
    candidate = "green" if stable == "blue" else "blue"
    version = version_of("HEAD")
    commit = commit_of("HEAD")
    # The build job: one image of HEAD, pushed where the program deploys from; its digest is new.
    # Its environment is the machine's (the images daemon's state dir), not the promotions' own.
    built = job_script(
        "build-image.sh",
        *("--revision", commit, "--repository", stack.repository, "--offline"),
        env={**os.environ, "NO_PROXY": "*"},
    )
    outputs = dict(line.split("=", 1) for line in built.splitlines() if "=" in line)
    assert outputs["image"] == f"{stack.repository}@{outputs['digest']}"
    assert outputs["digest"] != stack.digest
    # The promote job runs on a fresh checkout: its Pulumi.staging.yaml says what the repository commits
    # (no releases, activeColor blue, canaryWeight 0), not what the first promotion deployed. Read from
    # that file this would be a first promotion (no canary, everything at once): the rollout state must
    # come from the stack's outputs (docs/pipeline.md "Rollout state on Kubernetes").
    must(deploy("stack-file", STACK), "rewrite the stack file as a fresh checkout has it")
    committed = yaml.safe_load(Path(deploy_env(STACK)["PROJECT"], f"Pulumi.{STACK}.yaml").read_text())
    assert "releases" not in committed["config"]["active-immune-core:settings"]["rollout"], committed
    # The promote job: the digest from the build job, the stack's backend and passphrase.
    with RouteWatch(cluster, idle=candidate) as watch:
        job_script(
            "promote.sh",
            *("--stack", "cluster", "--ref", commit, "--out", str(tmp_path), "--by", "test_promote"),
            env={**stack.env, "IMMUNE_IMAGE_DIGEST": outputs["digest"]},
        )
    assert (tmp_path / "promotion-cluster.html").is_file()
    # Each canary step was judged on the stack's own Prometheus too (stacks/cluster.yaml `metrics:`):
    # the candidate colour's requests, errors and latency as the cluster's Prometheus scraped them.
    verified = suite(stack, "verify", "latest", "--stack", "cluster")
    record = json.loads(Path(verified.payload["record"]).read_text())
    canaries = [stage["verdict"] for stage in record["stages"] if stage["kind"] == "canary"]
    assert canaries and all(v["details"]["metrics"]["judged"] for v in canaries), canaries
    for verdict in canaries:
        seen = {m["name"]: m for m in verdict["measurements"]}
        assert seen["metrics.app_requests"]["value"] >= 20 and seen["metrics.app_requests"]["passed"], seen
        assert verdict["details"]["metrics"]["details"]["color"] == candidate, verdict["details"]["metrics"]
        # The router's own series in the stack's Prometheus (job `router`): the candidate's Services.
        routed, router_errors = seen["metrics.router_requests"], seen["metrics.router_error_ratio"]
        assert routed["value"] >= 20 and routed["passed"] and router_errors["passed"], seen
        # Every sample coloured by the router's own view (X-Immune-Served-By: the Service it chose).
        attributed = verdict["details"]["ingress_attribution"]["requests_by_color"]
        assert attributed.get(candidate, 0) > 0 and "unattributed" not in attributed, attributed
        # ... and the router's own counters over the step (its metrics page): it sent the candidate
        # requests and neither it nor the candidate failed any.
        counted = verdict["details"]["ingress_attribution"]["proxy_counters"][candidate]
        assert counted["responses"] > 0 and counted["responses_5xx"] == counted["failures"] == 0, counted
    status = suite(stack, "status", "--stack", "cluster")
    assert status.code == 0 and status.payload["run"]["status"] == "promoted", status.output
    preview = [dict(weights).get("immune-core-preview") for weights in watch.seen]
    shares = [share for share in preview if share]
    assert sorted(set(shares), key=shares.index) == STEPS, watch.seen
    assert watch.seen[-1] == [("immune-core", 100)], watch.seen
    assert selector_colour(cluster) == candidate
    # The candidate was idle while it took canary traffic: it served requests, but consumed no production
    # input and never led (issue 10 item 3; the gauge is its ColorGate's answer, coordination/color.py).
    assert watch.idle_samples, "no sample of the candidate's pods mid-canary: no data is a failure"
    assert all(s["immune_deployment_live"] == 0 and s["immune_leader"] == 0 for s in watch.idle_samples), (
        watch.idle_samples
    )
    # ... and is the live colour after the switch (the activation Job wrote it).
    wait_for(
        lambda: (
            {g.get("immune_deployment_live") for g in pod_gauges(cluster, candidate, IDLE_GAUGES).values()}
            == {1.0}
        ),
        timeout_s=60,
        interval_s=2,
        what="the new stable colour live",
    )
    wait_for(lambda: only(stack, candidate, version), timeout_s=120, interval_s=1, what="candidate stable")
    assert set(served(stack, 100)) == {(candidate, version, 200)}
    assert deployment_replicas(cluster, stable) == 0  # the old colour retired
    # The candidate runs the job's image, by digest.
    assert outputs["digest"] in json.dumps(
        cluster.get("deployment", f"immune-core-{candidate}", "-n", NAMESPACE)
    )


def cluster_state(cluster: Kube, colour: str) -> str:
    """Pods (phase, Ready), the namespace's warnings (failed probes say why) and `colour`'s log tail."""
    pods = cluster.get("pods", "-n", NAMESPACE)["items"]
    states = [
        (
            p["metadata"]["name"],
            p["status"].get("phase"),
            p["metadata"].get("labels", {}).get(COLOR_LABEL),
            {c["type"]: c["status"] for c in p["status"].get("conditions", [])}.get("Ready"),
        )
        for p in pods
    ]
    events = cluster.get("events", "-n", NAMESPACE, "--field-selector", "type=Warning")["items"]
    warnings = [
        (e["involvedObject"]["name"], e.get("reason"), e.get("message"), e.get("count")) for e in events
    ]
    selector = ",".join(f"{k}={v}" for k, v in color_labels(colour).items())
    logs = cluster.kubectl("logs", "-n", NAMESPACE, "-l", selector, "--tail", "15", "--prefix", check=False)
    tail = logs.stdout[-4000:] + logs.stderr[-500:]
    # Each of the colour's pods' own answer to its readiness probe (the body names what failed).
    ready = {
        name: cluster.kubectl(
            "exec", "-n", NAMESPACE, name, "-c", "immune-core", "--", "python", "-c", READY_BODY, check=False
        ).stdout[-1500:]
        for name, _, pod_colour, _ in states
        if pod_colour == colour and name.startswith(f"immune-core-{colour}-")
    }
    return f"pods: {states}; ready: {ready}; warnings: {warnings[-15:]}; {colour} logs: {tail}"


# /health/ready's status and body from inside a pod (urllib: the image has no curl; a 503 has a body too).
READY_BODY = (
    "import urllib.request, urllib.error\n"
    f"try:\n r = urllib.request.urlopen('http://127.0.0.1:{HTTP_PORT}/health/ready', timeout=10)\n"
    " print(r.status, r.read().decode())\n"
    "except urllib.error.HTTPError as e:\n print(e.code, e.read().decode())\n"
)


def assert_rolled_back_live(cluster: Kube, stack: Stack, stable: str, candidate: str) -> None:
    """Stable alone on the route and the Service, every answer from it; the candidate at 0 pods."""
    assert route_weights(cluster) == [("immune-core", 100)]
    assert selector_colour(cluster) == stable
    try:
        wait_for(lambda: only(stack, stable, version_of("HEAD")), timeout_s=120, interval_s=1, what="stable")
    except AssertionError as exc:  # say what answered instead, and how the cluster looked
        raise AssertionError(
            f"{exc}; answers: {served(stack, 20)}; {cluster_state(cluster, stable)}"
        ) from None
    assert set(served(stack, 200)) == {(stable, version_of("HEAD"), 200)}
    assert deployment_replicas(cluster, candidate) == 0


def test_a_crashing_candidate_is_rolled_back(cluster: Kube, stack: Stack) -> None:
    stable = active_colour(cluster)
    candidate = "green" if stable == "blue" else "blue"
    # 30 % of its API requests answer 500: the smoke test (a handful of API calls) catches it most of
    # the time, else the first canary step does; either way the run rolls back.
    run = promote(stack, "HEAD~1", "--candidate-env", "IMMUNE_FAULT_ERROR_RATIO=0.3")
    assert run.code == 3, run.output  # a gate failed: rolled back
    assert run.payload["run"]["status"] == "rolled_back", run.payload
    early = ("smoke", *(f"canary-{weight}" for weight in STEPS[:2]))
    assert run.payload["run"]["failure"]["step"] in early, run.payload
    assert_rolled_back_live(cluster, stack, stable, candidate)
    if run.payload["run"]["failure"]["step"].startswith("canary"):
        # The router's own counters over the failed step name the candidate's 500s (its metrics page).
        record = json.loads(Path(run.payload["record"]).read_text())
        failed = [s["verdict"] for s in record["stages"] if s["kind"] == "canary"][-1]
        counted = failed["details"]["ingress_attribution"]["proxy_counters"][candidate]
        assert counted["responses_5xx"] > 0, counted


def test_a_slow_candidate_is_rolled_back_at_the_canary(cluster: Kube, stack: Stack) -> None:
    stable = active_colour(cluster)
    candidate = "green" if stable == "blue" else "blue"
    # 500 ms added to every API request: smoke passes (it checks answers, not speed), the first
    # canary step's latency comparison fails it while it holds a share of the live route.
    with RouteWatch(cluster) as watch:
        run = promote(stack, "HEAD~1", "--candidate-env", "IMMUNE_FAULT_LATENCY_MS=500")
    assert run.code == 3, run.output
    assert run.payload["run"]["status"] == "rolled_back", run.payload
    assert run.payload["run"]["failure"]["step"] == f"canary-{FIRST_STEP}", run.payload
    assert FIRST_STEP in [dict(weights).get("immune-core-preview") for weights in watch.seen], watch.seen
    assert_rolled_back_live(cluster, stack, stable, candidate)


def test_an_abort_mid_canary_rolls_back(cluster: Kube, stack: Stack) -> None:
    stable = active_colour(cluster)
    candidate = "green" if stable == "blue" else "blue"
    args = ["promote", "--stack", "cluster", "--ref", commit_of("HEAD~1"), "--image-digest", stack.digest]
    args.append("--json")
    with subprocess.Popen(
        [str(SUITE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=stack.env
    ) as running:
        # The candidate holds the first step's share of the live route: the canary is under way.
        wait_for(
            lambda: dict(route_weights(cluster)).get("immune-core-preview") == FIRST_STEP,
            timeout_s=600,
            interval_s=1,
            what=f"canary at {FIRST_STEP} % on the live HTTPRoute",
        )
        abort = suite(stack, "abort", "--stack", "cluster", "--reason", "test: abort mid-canary")
        assert abort.code == 0 and abort.payload.get("abort") == "requested", abort.output
        out, err = running.communicate(timeout=PROMOTE_TIMEOUT_S)
    assert running.returncode == 4, (out + err)[-6000:]  # aborted: rolled back
    payload = json.loads(out)
    assert payload["run"]["status"] != "promoted" and payload["run"]["finished"], payload
    assert_rolled_back_live(cluster, stack, stable, candidate)


def test_rollback_returns_to_the_previous_release(
    cluster: Kube, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`immune-suite rollback` from a runner whose state dir holds no record (as a CI job's): the release
    the stack itself keeps recorded on its retired colour (the first promotion: the program's image,
    HEAD~1; the rolled-back candidates since left that record as it was), not the serving one (the
    workflow jobs' image of HEAD), through deploy, smoke, switch and post-check, recorded as a rollback."""
    stable = active_colour(cluster)
    candidate = "green" if stable == "blue" else "blue"
    previous = version_of("HEAD~1")
    fresh_runner = dataclasses.replace(
        stack, env={**stack.env, "IMMUNE_STATE_DIR": str(tmp_path_factory.mktemp("fresh-runner"))}
    )
    run = suite(fresh_runner, "rollback", "--stack", "cluster", "--by", "test_promote")
    assert run.code == 0, run.output
    assert run.payload["run"]["status"] == "promoted" and run.payload["run"]["kind"] == "rollback", (
        run.payload
    )
    assert selector_colour(cluster) == candidate
    assert route_weights(cluster) == [("immune-core", 100)]
    wait_for(lambda: only(stack, candidate, previous), timeout_s=120, interval_s=1, what="previous release")
    assert set(served(stack, 100)) == {(candidate, previous, 200)}
    assert stack.digest in json.dumps(cluster.get("deployment", f"immune-core-{candidate}", "-n", NAMESPACE))
    record = json.loads(Path(run.payload["record"]).read_text())
    assert record["kind"] == "rollback"
    # Found on the stack, not in a record: this runner's state dir had none.
    assert {"event": "rollback to", "stack_record": candidate, "version": previous}.items() <= next(
        e for e in record["timeline"] if e["event"] == "rollback to"
    ).items(), record["timeline"]
