"""`cluster.dns: false`: the bundled Prometheus scrapes each exporter at its Service's ClusterIP (the
mocks answer what an API server would allocate), instead of DNS names that would never resolve, and each
pod of each colour through the discovery sidecar's file (immune_infra.endpoints_sd: EndpointSlices from
the API, file_sd). Debian's Prometheus (the image built here) has no kubernetes_sd (promtool refuses
it). With DNS (the default) the DNS discovery stays and no sidecar, token or Role exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from immune_infra import endpoints_sd
from immune_infra.render import RenderedStack, fake_cluster_ip

from tests.infra.support import DISCOVERY, NO_DNS, render


@pytest.fixture(scope="module", params=["staging", "prod"])
def no_dns(request: pytest.FixtureRequest) -> RenderedStack:
    return render(request.param, NO_DNS)


def _config(stack: RenderedStack) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        stack.find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    )
    return config


def _jobs(stack: RenderedStack) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in _config(stack)["scrape_configs"]}


def test_without_dns_prometheus_scrapes_cluster_ips(no_dns: RenderedStack) -> None:
    namespace = no_dns.exports["namespace"]
    text = no_dns.find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    assert "svc.cluster.local" not in text and "dns_sd_configs" not in text
    jobs = _jobs(no_dns)
    ip = {name: fake_cluster_ip(namespace, name) for name in ("kafka-exporter", "redis", "postgres")}
    app = jobs["immune-core"]
    assert "static_configs" not in app
    assert app["file_sd_configs"] == [
        {"files": ["/etc/prometheus-discovery/app.json"], "refresh_interval": "30s"}
    ]
    # kubernetes_sd's meta labels, as the sidecar writes them: the colour from the Service, the pod.
    assert {
        "source_labels": ["__meta_kubernetes_service_name"],
        "regex": "immune-core-(blue|green)-pods",
        "target_label": "color",
        "replacement": "$1",
    } in app["relabel_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"} in app["relabel_configs"]
    assert jobs["kafka"]["static_configs"] == [{"targets": [f"{ip['kafka-exporter']}:9308"]}]
    assert jobs["redis"]["static_configs"] == [{"targets": [f"{ip['redis']}:9121"]}]
    assert jobs["postgres"]["static_configs"] == [{"targets": [f"{ip['postgres']}:9187"]}]
    for job in jobs.values():
        assert {"target_label": "namespace", "replacement": namespace} in job["relabel_configs"]
    # The colour Services stay headless: their EndpointSlices list every pod.
    for color in ("blue", "green"):
        assert no_dns.find("Service", f"immune-core-{color}-pods")["spec"]["clusterIP"] == "None"


def test_without_dns_the_sidecar_lists_endpointslices_and_nothing_else(no_dns: RenderedStack) -> None:
    namespace = no_dns.exports["namespace"]
    pod = no_dns.find("StatefulSet", "prometheus")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "prometheus-discovery"
    containers = {container["name"]: container for container in pod["containers"]}
    sidecar = containers["discovery"]
    assert sidecar["image"] == DISCOVERY["image"]
    assert sidecar["command"] == ["python3", "/opt/discovery/endpoints_sd.py"]
    assert f"--namespace={namespace}" in sidecar["args"]
    assert sidecar["args"].count("--service") == 2 and "immune-core-green-pods" in sidecar["args"]
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    # The token is mounted in the sidecar only; Prometheus reads the file, read-only.
    token_mounts = [m for m in sidecar["volumeMounts"] if m["name"] == "api-token"]
    assert token_mounts == [
        {"name": "api-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}
    ]
    prometheus_mounts = {m["name"]: m for m in containers["prometheus"]["volumeMounts"]}
    assert "api-token" not in prometheus_mounts
    assert prometheus_mounts["discovered"]["readOnly"] is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    sources = volumes["api-token"]["projected"]["sources"]
    assert {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}} in sources
    script = no_dns.find("ConfigMap", "prometheus-discovery")["data"]["endpoints_sd.py"]
    assert "def discover(" in script
    role = no_dns.find("Role", "prometheus-discovery")
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}
    ]
    binding = no_dns.find("RoleBinding", "prometheus-discovery")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-discovery", "namespace": namespace}
    ]
    assert no_dns.find("ServiceAccount", "prometheus-discovery")["automountServiceAccountToken"] is False
    # Its NetworkPolicy admits the API server's address and port, nothing wider.
    policy = no_dns.find("NetworkPolicy", "allow-prometheus")["spec"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.244.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 16443}],
    } in policy["egress"]


def test_the_rendered_sidecar_command_and_probes_run(no_dns: RenderedStack, tmp_path: Path) -> None:
    """The sidecar's command line and its probes' exec commands as rendered, run here against the
    script (paths moved to tmp_path): the probes must fail on "no status yet", not on their arguments."""
    pod = no_dns.find("StatefulSet", "prometheus")["spec"]["template"]["spec"]
    sidecar = next(container for container in pod["containers"] if container["name"] == "discovery")

    def local(argv: list[str]) -> list[str]:
        moved = [arg.replace("/etc/prometheus-discovery", str(tmp_path)) for arg in argv]
        return [sys.executable, "-I", str(Path(endpoints_sd.__file__)), *moved[2:]]

    assert sidecar["livenessProbe"]["timeoutSeconds"] >= 5
    for kind in ("readinessProbe", "livenessProbe"):
        done = subprocess.run(
            local(sidecar[kind]["exec"]["command"]), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 1 and "no status yet" in done.stderr, (kind, done.stderr)
    polled = subprocess.run(
        [*local([*sidecar["command"], *sidecar["args"]]), "--once", "--api-url=http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert polled.returncode == 1 and "discovery_failed" in polled.stderr, polled.stderr


def test_without_dns_bundled_monitoring_needs_the_discovery() -> None:
    from immune_infra.config import ConfigError
    from immune_infra.render import render_stack

    with pytest.raises(ConfigError, match=r"needs monitoring\.endpointsDiscovery"):
        render_stack("staging", {"cluster": {"dns": False}})
    with pytest.raises(ConfigError, match=r"endpointsDiscovery\.image"):
        render_stack(
            "staging", {**NO_DNS, "monitoring": {"endpointsDiscovery": {**DISCOVERY, "image": "py:latest"}}}
        )


def test_without_dns_a_changed_address_rolls_prometheus(no_dns: RenderedStack) -> None:
    """The config hash on the pod template covers the resolved addresses (Prometheus reads its file once)."""
    with_dns = render(no_dns.exports["environment"])
    annotation = "immune.vertice.dev/config-hash"

    def config_hash(stack: RenderedStack) -> str:
        return str(
            stack.find("StatefulSet", "prometheus")["spec"]["template"]["metadata"]["annotations"][annotation]
        )

    assert config_hash(no_dns) != config_hash(with_dns)


def test_with_dns_the_dns_discovery_stays(stack: RenderedStack) -> None:
    namespace = stack.exports["namespace"]
    jobs = _jobs(stack)
    assert jobs["immune-core"]["dns_sd_configs"][0]["names"] == [
        f"immune-core-blue-pods.{namespace}.svc.cluster.local"
    ]
    assert jobs["redis"]["static_configs"] == [{"targets": [f"redis.{namespace}.svc.cluster.local:9121"]}]
    for color in ("blue", "green"):
        assert stack.find("Service", f"immune-core-{color}-pods")["spec"]["clusterIP"] == "None"
    assert not [m for m in stack.manifests if m["kind"] in ("Role", "RoleBinding")]
    pod = stack.find("StatefulSet", "prometheus")["spec"]["template"]["spec"]
    assert [container["name"] for container in pod["containers"]] == ["prometheus"]
    assert "serviceAccountName" not in pod


def test_without_dns_the_config_passes_promtool(no_dns: RenderedStack, promtool: str, tmp_path: Path) -> None:
    config = _config(no_dns)
    config["rule_files"] = []
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_kubernetes_sd_config_is_refused_by_this_prometheus(promtool: str, tmp_path: Path) -> None:
    """Why not kubernetes_sd: the Prometheus the images are built from does not know it."""
    path = tmp_path / "prometheus.yml"
    path.write_text(
        yaml.safe_dump({"scrape_configs": [{"job_name": "x", "kubernetes_sd_configs": [{"role": "pod"}]}]})
    )
    checked = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert checked.returncode != 0 and "kubernetes_sd_configs" in checked.stdout + checked.stderr
