"""Real pods on the local cluster: Deployments get Ready, killed containers come back, Services route.

Needs `scripts/cluster.sh up` (the session fixture `cluster` does it) and root.
"""

from __future__ import annotations

import pytest

from tests.cluster.support import LABELS, Kube, deploy_ready, read_versions

pytestmark = pytest.mark.cluster


def test_servers_report_the_pinned_version(cluster: Kube) -> None:
    pins = read_versions()
    raw = cluster.kubectl("get", "--raw", "/version").stdout
    assert f'"gitVersion": "{pins["KUBERNETES_VERSION"]}"' in raw
    node = cluster.get("node", pins["NODE_NAME"])
    assert node["status"]["nodeInfo"]["kubeletVersion"] == pins["KUBERNETES_VERSION"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://" + pins[
        "CONTAINERD_VERSION"
    ].removeprefix("v")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == pins["CNI_BRIDGE_IP"]


def test_two_replica_deployment_becomes_ready(cluster: Kube, probe_image: str, namespace: str) -> None:
    pods = deploy_ready(cluster, namespace, probe_image, 2)
    pins = read_versions()
    prefix = pins["POD_CIDR"].rsplit(".", 1)[0] + "."
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2 and all(ip.startswith(prefix) for ip in ips), ips
    deploy = cluster.get("deployment", "probe", "-n", namespace)
    assert deploy["status"]["readyReplicas"] == 2


def test_killed_container_is_restarted(cluster: Kube, probe_image: str, namespace: str) -> None:
    (pod,) = deploy_ready(cluster, namespace, probe_image, 1)
    name = pod["metadata"]["name"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    cluster.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)

    def restarted_and_ready() -> bool:
        p = cluster.get("pod", name, "-n", namespace)
        status = p["status"]["containerStatuses"][0]
        return bool(status["restartCount"] >= 1 and status["ready"])

    cluster.wait_until("the killed container to be restarted and Ready", restarted_and_ready)
    after = cluster.get("pod", name, "-n", namespace)["status"]["containerStatuses"][0]
    assert after["containerID"].removeprefix("containerd://") != container_id
    assert after["lastState"]["terminated"]["exitCode"] == 137


def test_pod_reaches_pod_through_service_cluster_ip(cluster: Kube, probe_image: str, namespace: str) -> None:
    pods = deploy_ready(cluster, namespace, probe_image, 2)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"selector": LABELS, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    svc = cluster.get("service", "probe", "-n", namespace)
    ip = svc["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in pods}
    client = sorted(names)[0]
    seen: set[str] = set()

    # kube-proxy programs the Service asynchronously: the first tries may find no rule yet.
    def answered() -> bool:
        proc = cluster.kubectl(
            "exec", "-n", namespace, client, "--", "/probe", "get", f"http://{ip}/", check=False
        )
        if proc.returncode == 0:
            seen.add(proc.stdout.strip().removeprefix("hello from "))
        return len(seen) > 0

    cluster.wait_until(f"{client} to get an answer from {ip}", answered, limit=60)
    assert seen <= names, seen


def test_wrong_service_port_is_refused(cluster: Kube, probe_image: str, namespace: str) -> None:
    """Bad case for the Service test: a port nothing serves gets no answer (so the good case can fail)."""
    (pod,) = deploy_ready(cluster, namespace, probe_image, 1)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "wrong", "namespace": namespace},
            "spec": {"selector": LABELS, "ports": [{"port": 80, "targetPort": 9}]},
        }
    )
    ip = cluster.get("service", "wrong", "-n", namespace)["spec"]["clusterIP"]
    proc = cluster.kubectl(
        "exec", "-n", namespace, pod["metadata"]["name"], "--", "/probe", "get", f"http://{ip}/", check=False
    )
    assert proc.returncode != 0
