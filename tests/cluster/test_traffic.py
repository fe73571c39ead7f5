"""The pipeline's Kubernetes target (immune_suite.targets.kubernetes) moving REAL requests through the
router: prod deployed into the local cluster (scripts/cluster-deploy.sh), then the target's
`set_traffic` (a config write + `pulumi up` through the Automation API, on the deploy script's project
copy, file backend and passphrase) takes a canary through 10 %, 50 % and 100 % and switches the stable
colour, every step read back from the live HTTPRoute and from the colour each response names
(`X-Immune-Color`) for requests sent to Traefik with the stack's Host header.

Bad cases: a weight outside 0..100 is refused before the stack is touched (no `up`, routes unchanged);
a switched-away colour gets no request through the stable route.

Needs root, the cached cluster build, the Pulumi engine and the images (see test_deploy.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from immune_infra.immune_app import COLOR_LABEL
from scipy.stats import binom

from immune_suite.targets.base import Color, TargetError, TrafficState
from immune_suite.targets.kubernetes import KubernetesTarget, KubernetesTargetOptions
from tests.app.support import wait_for
from tests.cluster.deploy_support import deploy, deploy_env, must, stable_host
from tests.cluster.support import Kube

pytestmark = pytest.mark.cluster

# Prod: the staging stack is the promotions' (test_chaos, test_promote), one module at a time; this module
# runs in the test command's other cluster stream (scripts/test.sh cluster_phase) beside them.
STACK = "prod"
NAMESPACE = f"immune-{STACK}"
STABLE_ROUTE = "immune-core"
# Requests per weighted sample, and the probability that a correct split falls outside the accepted
# binomial interval (so a failure means the weights are wrong, not bad luck).
SAMPLE = 400
FALSE_ALARM = 1e-6


@pytest.fixture(scope="module")
def deployed(cluster: Kube, images: None, router: str) -> Iterator[str]:
    must(deploy("up", STACK), f"pulumi up {STACK}")
    try:
        yield router
    finally:
        must(deploy("destroy", STACK), f"destroy {STACK}")


@pytest.fixture(scope="module")
def target(deployed: str, tmp_path_factory: pytest.TempPathFactory) -> KubernetesTarget:
    """The target on the stack cluster-deploy.sh deployed: its project copy, backend and passphrase."""
    env = deploy_env(STACK)
    return KubernetesTarget(
        KubernetesTargetOptions(
            stack=STACK,
            project_dir=Path(env["PROJECT"]),
            backend_url=env["BACKEND_URL"],
            extra_env={
                "PULUMI_CONFIG_PASSPHRASE_FILE": env["PASSPHRASE_FILE"],
                "KUBECONFIG": env["KUBECONFIG"],
            },
        )
    )


@pytest.fixture(scope="module")
def client(deployed: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deployed, headers={"Host": stable_host(STACK)}, timeout=30) as http:
        yield http


def colours(client: httpx.Client, requests: int) -> Counter[str]:
    """How many of `requests` GET /health/live through the router each colour answered."""
    seen: Counter[str] = Counter()
    for _ in range(requests):
        response = client.get("/health/live")
        assert response.status_code == 200, response.text
        seen[response.headers["x-immune-color"]] += 1
    return seen


def route_weights(kube: Kube) -> list[tuple[str, int]]:
    """(Service, weight) of the stable HTTPRoute's catch-all rule, read from the cluster."""
    route = kube.get("httproute", STABLE_ROUTE, "-n", NAMESPACE)
    rule = route["spec"]["rules"][-1]
    return [(ref["name"], int(ref.get("weight", 1))) for ref in rule["backendRefs"]]


def only(client: httpx.Client, colour: str) -> bool:
    return set(colours(client, 20)) == {colour}


def test_canary_steps_and_the_switch_move_real_requests(
    cluster: Kube, target: KubernetesTarget, client: httpx.Client
) -> None:
    assert target.traffic() == TrafficState(Color.BLUE, 0)
    wait_for(lambda: only(client, "blue"), timeout_s=120, interval_s=1, what="stable (blue) serving")

    for weight in (10, 50):
        state = target.set_traffic(Color.BLUE, weight)
        assert state == TrafficState(Color.BLUE, weight)
        assert route_weights(cluster) == [("immune-core", 100 - weight), ("immune-core-preview", weight)]
        # Traefik applies the route it watches shortly after `up`: the canary shows up first.
        wait_for(lambda: colours(client, 50)["green"] > 0, timeout_s=120, interval_s=1, what="canary traffic")
        seen = colours(client, SAMPLE)
        low, high = binom.interval(1 - FALSE_ALARM, SAMPLE, weight / 100)
        assert set(seen) == {"blue", "green"}, seen
        assert low <= seen["green"] <= high, (weight, seen, (low, high))

    assert target.set_traffic(Color.BLUE, 100) == TrafficState(Color.BLUE, 100)
    assert route_weights(cluster) == [("immune-core", 0), ("immune-core-preview", 100)]
    wait_for(lambda: only(client, "green"), timeout_s=120, interval_s=1, what="canary at 100 %")

    # The switch: green is stable, no canary route; then back, blue stable again.
    assert target.set_traffic(Color.GREEN, 0) == TrafficState(Color.GREEN, 0)
    assert route_weights(cluster) == [("immune-core", 100)]
    selector = cluster.get("service", "immune-core", "-n", NAMESPACE)["spec"]["selector"]
    assert selector[COLOR_LABEL] == "green"
    wait_for(lambda: only(client, "green"), timeout_s=120, interval_s=1, what="green stable")
    assert set(colours(client, SAMPLE)) == {"green"}

    assert target.set_traffic(Color.BLUE, 0) == TrafficState(Color.BLUE, 0)
    wait_for(lambda: only(client, "blue"), timeout_s=120, interval_s=1, what="blue stable again")
    assert set(colours(client, SAMPLE)) == {"blue"}


def test_a_weight_outside_0_to_100_is_refused_and_nothing_moves(
    cluster: Kube, target: KubernetesTarget, client: httpx.Client
) -> None:
    before = (target.traffic(), route_weights(cluster))
    with pytest.raises(TargetError, match=r"outside 0\.\.100"):
        target.set_traffic(Color.BLUE, 150)
    assert (target.traffic(), route_weights(cluster)) == before
    assert json.loads(must(deploy("outputs", STACK), "outputs"))["canaryWeight"] == before[0].canary_weight
