"""`pulumi up` of staging and prod FOR REAL into the local cluster (scripts/cluster-deploy.sh), then a smoke
test through the router: a port-scan burst posted to the app through Traefik (127.0.0.1, Host header of
the stack's routing.host) is detected (a threat on the API), stored in the stack's PostgreSQL (queried in
its pod), published on its Kafka (consumed in the broker's pod) and counted in its Prometheus (queried
through the API server's service proxy), by the app and by the router (job `router`: Traefik's metrics
entry point on the bridge, monitoring.routerScrapeTarget; only the stack's own Services' series). A wait
on a series that times out names every scrape target's health and last error. A second `up` changes
nothing; `destroy` removes everything.
Bad case: a preview colour whose image digest does not exist fails `up` within the bound its config sets
(`app.rolloutTimeoutSeconds`; before, `up` hung past 600 s), naming the colour's migration Job and the
pull error, the preview Deployment untouched and the stable colour serving; the next `up` recovers.

Needs root, the cached cluster build, the Pulumi engine and the images (scripts/images.sh build; cached).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from immune_infra.immune_app import COLOR_LABEL, HTTP_PORT
from immune_infra.local_cluster import LOCAL_GATEWAY_RATE_LIMIT_PER_10S

from tests.app.support import port_scan, wait_for
from tests.cluster.deploy_support import DEPLOY_SH, deploy, ingest_token, must, stable_host
from tests.cluster.support import Kube, read_versions

pytestmark = pytest.mark.cluster

THREATS_TOPIC = "immunis.threats.detected"


class Deployed:
    def __init__(self, kube: Kube, stack: str, router_url: str) -> None:
        self.kube = kube
        self.stack = stack
        self.namespace = f"immune-{stack}"
        self.client = httpx.Client(
            base_url=router_url,
            headers={"Host": stable_host(stack), "Authorization": f"Bearer {ingest_token(stack)}"},
            timeout=30,
        )

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.get("pods", "-n", self.namespace)["items"]
        return items

    def exec(self, pod: str, container: str, *command: str) -> str:
        proc = self.kube.kubectl(
            "exec", "-n", self.namespace, pod, "-c", container, "--", *command, check=False
        )
        assert proc.returncode == 0, f"exec {pod}/{container} {command}: {proc.stderr}"
        return proc.stdout

    def prometheus(self, query: str) -> list[dict[str, Any]]:
        path = (
            f"/api/v1/namespaces/{self.namespace}/services/prometheus:9090/proxy/api/v1/query?"
            + urllib.parse.urlencode({"query": query})
        )
        answer = json.loads(self.kube.kubectl("get", "--raw", path).stdout)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def prometheus_targets(self) -> str:
        """Prometheus's active targets, one line each (job, scrapeUrl, health, lastError), for a failure
        message: what a wait on a series could not see (through the same API-server proxy)."""
        path = (
            f"/api/v1/namespaces/{self.namespace}/services/prometheus:9090/proxy/api/v1/targets?state=active"
        )
        proc = self.kube.kubectl("get", "--raw", path, check=False)
        if proc.returncode != 0:
            return f"(no target list: {proc.stderr.strip()[:500]})"
        targets = json.loads(proc.stdout)["data"]["activeTargets"]
        return (
            "\n".join(
                f"  {t['labels'].get('job')} {t['scrapeUrl']} {t['health']} {t.get('lastError') or '-'}"
                for t in targets
            )
            or "  (no active targets)"
        )

    def pod_counts(self, metric: str) -> str:
        """`metric` summed over its series in each Ready app pod's own /metrics (the API server's pod
        proxy), one line per pod: which pod counted what, beside what Prometheus scraped (each pod, found
        by the discovery sidecar: immune_infra.endpoints_sd)."""
        lines = []
        for pod in self.kube.get("pods", "-n", self.namespace, "-l", "app.kubernetes.io/component=api")[
            "items"
        ]:
            if not _ready(pod):
                continue
            name = pod["metadata"]["name"]
            path = f"/api/v1/namespaces/{self.namespace}/pods/{name}:{HTTP_PORT}/proxy/metrics"
            proc = self.kube.kubectl("get", "--raw", path, check=False)
            if proc.returncode != 0:
                lines.append(
                    f"  {name} {pod['status'].get('podIP')}: unreadable ({proc.stderr.strip()[:200]})"
                )
                continue
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in proc.stdout.splitlines()
                if line.startswith((f"{metric} ", f"{metric}{{"))
            )
            lines.append(f"  {name} {pod['status'].get('podIP')}: {metric} = {total:g}")
        return "\n".join(lines) or "  (no Ready app pod)"

    def wait_for_series(
        self, query: str, enough: float, what: str, pods_metric: str | None = None
    ) -> list[dict[str, Any]]:
        """Until `query`'s first sample is >= `enough`; on timeout the failure names every target's
        health and last scrape error (an empty result says nothing by itself) and, with `pods_metric`,
        each app pod's own count of it."""
        try:
            result: list[dict[str, Any]] = wait_for(
                lambda: (r := self.prometheus(query)) and float(r[0]["value"][1]) >= enough and r,
                timeout_s=180,
                interval_s=3,
                what=what,
            )
        except AssertionError as exc:
            found = f"{exc}\nPrometheus's active targets:\n{self.prometheus_targets()}"
            if pods_metric is not None:
                found += f"\nEach app pod's own /metrics:\n{self.pod_counts(pods_metric)}"
            raise AssertionError(found) from exc
        return result


def _ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


@pytest.fixture(scope="module", params=["staging", "prod"])
def deployed(request: pytest.FixtureRequest, cluster: Kube, images: None, router: str) -> Iterator[Deployed]:
    stack: str = request.param
    must(deploy("up", stack), f"pulumi up {stack}")
    try:
        yield Deployed(cluster, stack, router)
    finally:
        destroyed = deploy("destroy", stack)
        left = cluster.kubectl("get", "namespace", f"immune-{stack}", check=False)
        assert destroyed.returncode == 0 and left.returncode != 0, destroyed.stderr[-3000:]


def _not_ready(pods: list[dict[str, Any]]) -> list[str]:
    """Names of the long-running pods (not Jobs') that are not Ready."""
    long_running = [p for p in pods if not p["metadata"].get("ownerReferences", [{}])[0].get("kind") == "Job"]
    return [p["metadata"]["name"] for p in long_running if not _ready(p)]


def test_every_workload_is_running_and_ready(deployed: Deployed) -> None:
    # `up` returns once each Deployment's rollout is done, but with several replicas per colour (prod: 3)
    # some app pods were seen not yet Ready at that moment (2026-11-30): readiness from live status is
    # issue 10's; here every pod must become Ready within a generous deadline, never a speed assertion.
    wait_for(lambda: not _not_ready(deployed.pods()), timeout_s=300, interval_s=2, what="every pod Ready")
    pods = deployed.pods()
    # Jobs (migrations, topics) have completed; everything else runs and is Ready.
    long_running = [p for p in pods if not p["metadata"].get("ownerReferences", [{}])[0].get("kind") == "Job"]
    assert not _not_ready(pods)
    names = {p["metadata"]["name"] for p in long_running}
    for prefix in (
        "kafka-0",
        "redis-0",
        "postgres-0",
        "prometheus-0",
        "immune-core-blue-",
        "immune-core-green-",
    ):
        assert any(name.startswith(prefix) for name in names), (prefix, sorted(names))
    jobs = [p for p in pods if p not in long_running]
    assert jobs and all(p["status"]["phase"] == "Succeeded" for p in jobs)


def test_prometheus_scrapes_every_app_pod_of_both_colours(deployed: Deployed) -> None:
    """No cluster DNS here: the discovery sidecar turns the colours' EndpointSlices into one target per
    pod (a colour's Service would reach one pod of several per scrape: prod runs 3 per colour)."""
    wait_for(lambda: not _not_ready(deployed.pods()), timeout_s=300, interval_s=2, what="every pod Ready")
    app_pods = {
        p["metadata"]["name"]: p["metadata"]["labels"][COLOR_LABEL]
        for p in deployed.pods()
        if p["metadata"]["name"].startswith(("immune-core-blue-", "immune-core-green-")) and _ready(p)
    }
    assert len(app_pods) >= 2, app_pods

    def scraped() -> dict[str, str]:
        up = deployed.prometheus(f'up{{namespace="{deployed.namespace}", job="immune-core"}} == 1')
        return {r["metric"].get("pod", "?"): r["metric"].get("color", "?") for r in up}

    found = wait_for(
        lambda: (seen := scraped()) == app_pods and seen, timeout_s=120, interval_s=3, what="a target per pod"
    )
    assert found == app_pods, deployed.prometheus_targets()


# The bound the bad case configures, and the test's safety net around its `up`: a multiple of the bound
# and below the provider's own 10 minutes, so an `up` that ignores the bound fails the test instead of
# hanging it. Not a speed assertion: the bound is the program's contract, the net is generous.
BROKEN_ROLLOUT_TIMEOUT_S = 60
BROKEN_UP_SAFETY_S = 8 * BROKEN_ROLLOUT_TIMEOUT_S


def deploy_bounded(
    action: str, stack: str, env: dict[str, str], limit_s: float
) -> subprocess.CompletedProcess[str]:
    """`cluster-deploy.sh action stack` in its own process group; past `limit_s` the group gets SIGINT
    (Pulumi's graceful cancel: it releases the stack's lock) and the test fails."""
    proc = subprocess.Popen(
        ["bash", str(DEPLOY_SH), action, stack],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
        pytest.fail(
            f"`{action} {stack}` still running after {limit_s:.0f} s:\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def deployment_image(deployed: Deployed, name: str) -> str:
    spec = deployed.kube.get("deployment", name, "-n", deployed.namespace)["spec"]
    return str(spec["template"]["spec"]["containers"][0]["image"])


# Runs before the port scan: after one, staging's stable pod was seen going NotReady (Traefik: "no
# available server"; docs/infra.md, cause not yet known), which is not what this case is about. "Stable
# serving" is judged here on the fresh deployment.
@pytest.mark.only_stack("staging")  # the bad case runs once (tests/cluster/conftest.py deselects prod's)
def test_a_broken_digest_fails_up_within_the_configured_bound_and_stable_keeps_serving(
    deployed: Deployed, tmp_path: Path
) -> None:
    green_before = deployment_image(deployed, "immune-core-green")
    before = deployed.client.get("/health/live")
    assert before.status_code == 200 and before.headers["x-immune-color"] == "blue", before.text
    registry = f"127.0.0.1:{read_versions()['IMAGES_REGISTRY_PORT']}"
    broken = f"{registry}/pulumi/immune-core@sha256:{'0' * 64}"
    overrides = tmp_path / "broken.json"
    overrides.write_text(
        json.dumps(
            {
                "app": {"rolloutTimeoutSeconds": BROKEN_ROLLOUT_TIMEOUT_S},
                "rollout": {"images": {"green": broken}},
            }
        )
    )
    failed = deploy_bounded(
        "up", deployed.stack, {"IMMUNE_DEPLOY_OVERRIDES": str(overrides)}, BROKEN_UP_SAFETY_S
    )
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-4000:]
    # The green colour's migration Job runs its image first: it is what fails, Kubernetes ending it at
    # the configured deadline, with the pull error of the missing digest.
    assert "kubernetes:batch/v1:Job (immune-core-migrate-green)" in output, output[-4000:]
    assert "DeadlineExceeded" in output, output[-4000:]
    assert "ErrImagePull" in output or "ImagePullBackOff" in output, output[-4000:]
    assert broken in output
    # Nothing rolled: the preview Deployment keeps its image, the stable colour (blue) serves the API
    # through the router. (Readiness is the app's own verdict, cell population included: not this test's.)
    assert deployment_image(deployed, "immune-core-green") == green_before
    live = deployed.client.get("/health/live")
    assert live.status_code == 200 and live.headers["x-immune-color"] == "blue", live.text
    assert deployed.client.get("/api/v1/threats", params={"category": "port_scan"}).status_code == 200
    # Back to the good images: the next `up` succeeds, and changes nothing after that.
    must(deploy("up", deployed.stack), "up after the bad case")
    assert deployment_image(deployed, "immune-core-green") == green_before
    must(deploy("check", deployed.stack), "second up after the bad case")


PLATFORM_RATE_LIMIT = "immune-core-platform-rate-limit"
THREATS_ROUTE = "/api/v1/threats"


def _served_to(deployed: Deployed, route: str) -> float:
    """Requests the stable colour's pods (blue) have counted on ``route`` (every status): the sum of
    `immune_http_request_duration_seconds_count` read from each Ready pod's /metrics through the API
    server's pod proxy. Fails (with what was read) if no pod's metrics could be read."""
    pods = deployed.kube.get("pods", "-n", deployed.namespace, "-l", "immune.vertice.dev/color=blue")["items"]
    total, read, seen = 0.0, 0, []
    for pod in (p for p in pods if _ready(p)):
        name = pod["metadata"]["name"]
        text = deployed.kube.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{deployed.namespace}/pods/{name}:{HTTP_PORT}/proxy/metrics"
        ).stdout
        counts = [
            line
            for line in text.splitlines()
            if line.startswith("immune_http_request_duration_seconds_count{")
        ]
        assert counts, f"{name}: no request counts in its /metrics: {text[:500]!r}"
        read += 1
        seen.extend(counts)
        # The label is the matched route's template: "/threats" (the threats router's own path, as this
        # image's Starlette reports it) or the full "/api/v1/threats"; either is the same endpoint.
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in counts
            if (label := re.search(r'route="([^"]*)"', line))
            and label.group(1).startswith("/")
            and route.endswith(label.group(1))
        )
    assert read, f"no Ready blue pod among {[p['metadata']['name'] for p in pods]}"
    print(f"{route}: {total} ({read} pods; {seen})")
    return total


def _gateway_health(anonymous: httpx.Client) -> tuple[int, dict[str, Any]]:
    answer = anonymous.get("/health")
    return answer.status_code, answer.json()


# Before the port scan (see the broken-digest case above: the scan was once seen making the stable pod
# NotReady, which would be read here as the gateway's 503).
@pytest.mark.only_stack("staging")
def test_the_platform_gateway_checks_limits_and_aggregates_the_cores_health(deployed: Deployed) -> None:
    """The Pulumi program's platform route (HTTPRoute immune-core-platform with its Traefik Middlewares,
    docs/infra.md "The platform gateway") on the real router: /api/immune/* with a token reaches the
    stable core; without one the gateway answers 401 and the core never sees it; past the configured
    per-address limit the gateway answers 429; GET /health follows the stable core's readiness."""
    anonymous = httpx.Client(
        base_url=str(deployed.client.base_url), headers={"Host": deployed.client.headers["Host"]}, timeout=30
    )
    limit = deployed.kube.get("middlewares.traefik.io", PLATFORM_RATE_LIMIT, "-n", deployed.namespace)[
        "spec"
    ]["rateLimit"]["average"]
    assert limit == LOCAL_GATEWAY_RATE_LIMIT_PER_10S  # this cluster's setting, as deployed

    # With a token: the stable core's /api/v1/threats, the answering pod named by the gateway.
    ok = deployed.client.get("/api/immune/threats", params={"category": "port_scan"})
    assert ok.status_code == 200, ok.text
    assert ok.headers["x-immune-color"] == "blue"
    assert ok.headers["x-immune-served-by"] == f"blue/{ok.headers['x-immune-instance']}"
    probe = anonymous.get("/api/immune/health/live")  # probes need no token
    assert probe.status_code == 200 and probe.json()["color"] == "blue", probe.text

    # Without one (or with another scheme): 401 from the gateway, not forwarded (the core's count of
    # /api/v1/threats requests does not move; a forwarded request would be counted with its 401).
    before = _served_to(deployed, THREATS_ROUTE)
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}):
        refused = anonymous.get("/api/immune/threats", headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.headers["x-immune-served-by"] == "gateway"
        assert refused.json()["error"] == "unauthorized"
        assert "x-immune-instance" not in refused.headers
    assert _served_to(deployed, THREATS_ROUTE) == before
    deployed.client.get("/api/immune/threats", params={"category": "port_scan"}).raise_for_status()
    assert _served_to(deployed, THREATS_ROUTE) == before + 1  # the counter does see forwarded requests

    # A burst past the limit, from one address, at full speed (8 in flight): the gateway's 429.
    def one(_: int) -> httpx.Response:
        return deployed.client.get("/api/immune/no-such-resource")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(4 * limit)))
    limited = [a for a in answers if a.status_code == 429]
    assert limited, sorted({a.status_code for a in answers})
    assert all(a.headers["x-immune-served-by"] == "gateway" for a in limited)
    assert all(int(a.headers["retry-after"]) >= 1 for a in limited)
    assert sum(a.status_code == 404 and a.headers["x-immune-color"] == "blue" for a in answers) >= limit // 2

    # The gateway's aggregated health: up with a Ready stable pod; 503 once none is; up again after.
    status, body = _gateway_health(anonymous)
    assert status == 200, body
    assert body["status"] == "up" and body["services"]["immune_core"]["status"] == "up", body
    assert body["services"]["immune_core"]["colour"] == "blue"
    scale = deployed.kube.get("deployment", "immune-core-blue", "-n", deployed.namespace)["spec"]["replicas"]
    deployed.kube.kubectl("scale", "deployment", "immune-core-blue", "-n", deployed.namespace, "--replicas=0")
    try:
        status, body = wait_for(
            lambda: (h := _gateway_health(anonymous))[0] == 503 and h,
            timeout_s=180,
            interval_s=1,
            what="the gateway's 503 with no stable pod",
        )
        assert body == {
            "status": "degraded",
            "services": {
                "immune_core": {
                    "status": "down",
                    "upstream_status": body["services"]["immune_core"]["upstream_status"],
                }
            },
        }, body
        assert body["services"]["immune_core"]["upstream_status"] >= 500
    finally:
        deployed.kube.kubectl(
            "scale", "deployment", "immune-core-blue", "-n", deployed.namespace, f"--replicas={scale}"
        )
    wait_for(
        lambda: _gateway_health(anonymous)[0] == 200, timeout_s=300, interval_s=2, what="the gateway up again"
    )
    wait_for(lambda: not _not_ready(deployed.pods()), timeout_s=300, interval_s=2, what="every pod Ready")


def test_a_port_scan_through_the_router_is_detected_stored_published_and_counted(deployed: Deployed) -> None:
    attacker = f"198.51.100.{secrets.randbelow(200) + 20}"
    events = port_scan(attacker=attacker, ports=120)
    posted = deployed.client.post("/api/v1/events", json={"events": events})
    assert posted.status_code == 202, posted.text

    threats = wait_for(
        lambda: (
            deployed.client.get("/api/v1/threats", params={"antigen": attacker, "category": "port_scan"})
            .json()
            .get("items")
        ),
        timeout_s=180,
        what="the port scan as a threat on the API",
    )
    threat_id = threats[0]["threat_id"]

    stored = deployed.exec(
        "postgres-0", "postgres", "psql", "-U", "immune", "-d", "immune", "-tAc",
        f"SELECT category FROM threats WHERE threat_id = '{threat_id}'",
    )  # fmt: skip
    assert stored.strip() == "port_scan"

    def published() -> bool:
        # A small heap for the tool's JVM: the exec inherits the broker's KAFKA_HEAP_OPTS, and two JVMs
        # at the broker's heap in one container went past its memory limit (prod: killed, exit 137).
        out = deployed.exec(
            "kafka-0", "kafka", "env", "KAFKA_HEAP_OPTS=-Xms32m -Xmx96m",
            "kafka-console-consumer.sh", "--bootstrap-server", "127.0.0.1:9092",
            "--topic", THREATS_TOPIC, "--from-beginning", "--timeout-ms", "15000",
        )  # fmt: skip
        return any(threat_id in line for line in out.splitlines())

    wait_for(published, timeout_s=120, interval_s=2, what=f"{threat_id} on {THREATS_TOPIC}")

    query = f'sum(immune_events_total{{namespace="{deployed.namespace}"}})'
    counted = deployed.wait_for_series(
        query, len(events), "the ingest counter in Prometheus", pods_metric="immune_events_total"
    )
    assert float(counted[0]["value"][1]) >= len(events)
    # The router's view of the requests above (monitoring.routerScrapeTarget: its metrics entry point
    # on the bridge; only this namespace's Services are kept).
    routed = f'sum(traefik_service_requests_total{{namespace="{deployed.namespace}", job="router"}})'
    assert float(deployed.wait_for_series(routed, 1, "the router's request counter")[0]["value"][1]) > 0
    services = deployed.prometheus(
        f'sum by (service) (traefik_service_requests_total{{namespace="{deployed.namespace}"}})'
    )
    print(f"{deployed.namespace}: router service labels:", sorted(r["metric"]["service"] for r in services))
    assert all(f"-svc-{deployed.namespace}-" in r["metric"]["service"] for r in services), services
    up = deployed.prometheus(f'up{{namespace="{deployed.namespace}"}}')
    assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} >= {
        "immune-core",
        "kafka",
        "redis",
        "postgres",
        "router",
    }, deployed.prometheus_targets()


def test_a_second_up_changes_nothing(deployed: Deployed) -> None:
    must(deploy("check", deployed.stack), "second up")
