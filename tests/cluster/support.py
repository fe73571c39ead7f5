"""Helpers for the cluster tests: versions.env parsing, scripts/cluster.sh, kubectl/ctr, host snapshots."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from immune_suite.paths import REPO_ROOT

REPO = REPO_ROOT
CLUSTER_SH = REPO / "scripts" / "cluster.sh"


def read_versions(path: Path = REPO / "cluster" / "versions.env") -> dict[str, str]:
    """Parse cluster/versions.env (KEY=value lines, '#' comments) into a dict."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path}: not KEY=value: {line!r}")
            pins[key] = value
    return pins


def run_cluster_sh(*args: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run scripts/cluster.sh with ``args``; output captured as text."""
    proc = subprocess.run(
        ["bash", str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"cluster.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc


def cluster_env() -> dict[str, str]:
    """The variables that `scripts/cluster.sh env` exports, as a dict."""
    env: dict[str, str] = {}
    for line in run_cluster_sh("env").stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def _images_mount(path: str) -> bool:
    """Mounts of a Docker daemon that is not the cluster's: scripts/images.sh's (its build containers, which
    tests/cluster/test_images.py covers) and the engine tests' private one under pytest's temporary
    directory (tests/infra/docker_daemon.py; scripts/test.sh runs those tests beside the cluster's). They
    come and go with builds that may run while a cluster session is open."""
    return (
        "/active-immune-core/docker/" in path
        or path.startswith("/run/immune-docker")
        or path.startswith(f"{tempfile.gettempdir()}/pytest-of-")
    )


def host_snapshot() -> dict[str, list[str]]:
    """What `down` must give back: link names, addresses, iptables rules (no counters), mounts."""

    def out(*cmd: str) -> list[str]:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()

    snap = {
        "links": sorted(line.split(": ")[1].split("@")[0] for line in out("ip", "-o", "link", "show")),
        "addrs": sorted(" ".join(line.split()[1:4]) for line in out("ip", "-o", "addr", "show")),
        "mounts": sorted(
            mount
            for mount in (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
            if not _images_mount(mount)
        ),
    }
    for table in ("filter", "nat", "mangle", "raw"):
        rules = out("iptables-save", "-t", table)
        snap[f"iptables-{table}"] = [r.split(" [")[0] for r in rules if not r.startswith("#")]
    return snap


@dataclass
class Kube:
    """kubectl/ctr against the running cluster. ``env`` is the output of `cluster.sh env`."""

    env: dict[str, str]
    namespaces: list[str] = field(default_factory=list)

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [f"{self.env['AIC_CLUSTER_BIN']}/kubectl", "--kubeconfig", self.env["KUBECONFIG"], *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [
            f"{self.env['AIC_CLUSTER_BIN']}/ctr",
            "--address",
            self.env["CONTAINERD_ADDRESS"],
            "-n",
            "k8s.io",
        ]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

    def new_namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        self.namespaces.append(name)
        return name

    def wait_until(self, what: str, predicate: Any, limit: float = 120.0) -> Any:
        """Poll ``predicate()`` every 0.2 s until it returns a truthy value; fail after ``limit`` s."""
        deadline = time.monotonic() + limit
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)


LABELS = {"app": "probe"}


def deployment(image: str, replicas: int) -> dict[str, Any]:
    """A Deployment of the probe server with an HTTP readiness probe (so Ready means it serves)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "probe",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": 8080},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def deploy_ready(kube: Kube, ns: str, image: str, replicas: int) -> list[dict[str, Any]]:
    """Apply the probe Deployment in ``ns`` and wait until ``replicas`` pods are Ready; return them."""
    manifest = deployment(image, replicas)
    manifest["metadata"]["namespace"] = ns
    kube.apply(manifest)

    def ready_pods() -> list[dict[str, Any]]:
        pods = kube.get("pods", "-n", ns, "-l", "app=probe")["items"]
        ready = [
            p
            for p in pods
            if p["metadata"].get("deletionTimestamp") is None
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        return ready if len(ready) == replicas else []

    return list(kube.wait_until(f"{replicas} Ready probe pods in {ns}", ready_pods))
