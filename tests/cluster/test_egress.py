"""Pods cannot leave the cluster: the FORWARD guard drops pod traffic to any address outside the
pod/Service ranges.

The "outside" is a network namespace this test makes itself (a veth pair, 198.18.0.0/30 from the
benchmarking range, a Python HTTP server inside), so no packet is ever aimed at a real network: the
host reaches it (control), a pod does not while the guard is in place (the guard's DROP counter moves),
and a pod does once the guard's jump is lifted for a moment (so the test can fail).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.cluster.support import Kube, deploy_ready, read_versions

pytestmark = pytest.mark.cluster

HOST_SIDE, NS_SIDE = "aic-out-h", "aic-out-n"
HOST_IP, OUTSIDE_IP = "198.18.0.1", "198.18.0.2"
PORT = 18080


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture
def outside() -> Iterator[str]:
    """An HTTP server at OUTSIDE_IP:PORT in a fresh netns routed via the host; yields 'ip:port'.

    The namespace is held by a process (no `ip netns add`, which would leave a /run/netns mount);
    killing the holder and the server by PID removes the namespace and the veth pair with it.
    """
    pins = read_versions()
    holder = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    procs = [holder]
    try:
        ns = ["nsenter", "-t", str(holder.pid), "-n"]
        time.sleep(0.2)  # unshare must have switched namespaces before the veth is moved in
        sh("ip", "link", "add", HOST_SIDE, "type", "veth", "peer", "name", NS_SIDE)
        sh("ip", "link", "set", NS_SIDE, "netns", str(holder.pid))
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_SIDE)
        sh("ip", "link", "set", HOST_SIDE, "up")
        sh(*ns, "ip", "addr", "add", f"{OUTSIDE_IP}/30", "dev", NS_SIDE)
        sh(*ns, "ip", "link", "set", NS_SIDE, "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "route", "add", pins["POD_CIDR"], "via", HOST_IP)
        server = subprocess.Popen(
            [*ns, "python3", "-m", "http.server", str(PORT), "--bind", OUTSIDE_IP],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(server)
        url = f"http://{OUTSIDE_IP}:{PORT}/"
        deadline = time.monotonic() + 30
        while True:  # control: the host itself reaches the outside server
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    assert resp.status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"{OUTSIDE_IP}:{PORT}"
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", HOST_SIDE], capture_output=True, check=False)


def drops() -> int:
    """Packets counted by the guard's DROP rule."""
    out = subprocess.run(
        ["iptables", "-w", "-t", "filter", "-L", "AIC-EGRESS", "-n", "-v", "-x"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if " DROP " in f" {line} ")


def test_pod_cannot_reach_an_address_outside_the_cluster(
    cluster: Kube, probe_image: str, namespace: str, outside: str
) -> None:
    pins = read_versions()
    (pod,) = deploy_ready(cluster, namespace, probe_image, 1)
    name = pod["metadata"]["name"]
    before = drops()
    blocked = cluster.kubectl("exec", "-n", namespace, name, "--", "/probe", "dial", outside, check=False)
    assert blocked.returncode != 0, blocked.stdout
    assert drops() > before

    # Lift the guard (its egress jump, and the inbound drop that would stop the replies) for one dial:
    # the same pod now gets through, so the block above is the guard's doing.
    bridge = pins["CNI_BRIDGE"]
    rules = [["-i", bridge, "-j", "AIC-EGRESS"], ["!", "-i", bridge, "-o", bridge, "-j", "DROP"]]
    for rule in rules:
        sh("iptables", "-w", "-D", "FORWARD", *rule)
    try:
        through = cluster.kubectl("exec", "-n", namespace, name, "--", "/probe", "dial", outside, check=False)
    finally:
        for rule in reversed(rules):
            sh("iptables", "-w", "-I", "FORWARD", "1", *rule)
    assert through.returncode == 0, through.stderr
    assert "connected" in through.stdout
