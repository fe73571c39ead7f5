"""`cluster.dns: false`: the bundled Prometheus scrapes each colour and each exporter at its Service's
ClusterIP (the mocks answer what an API server would allocate), instead of DNS names that would never
resolve. Debian's Prometheus (the image built here) has no kubernetes_sd (promtool refuses it), so the
program writes the addresses it knows. With DNS (the default) the DNS discovery stays."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from immune_infra.render import RenderedStack, fake_cluster_ip

from tests.infra.support import render


@pytest.fixture(scope="module", params=["staging", "prod"])
def no_dns(request: pytest.FixtureRequest) -> RenderedStack:
    return render(request.param, {"cluster": {"dns": False}})


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
    assert jobs["immune-core"]["static_configs"] == [
        {
            "targets": [f"{fake_cluster_ip(namespace, f'immune-core-{color}-pods')}:8080"],
            "labels": {"color": color},
        }
        for color in ("blue", "green")
    ]
    assert jobs["kafka"]["static_configs"] == [{"targets": [f"{ip['kafka-exporter']}:9308"]}]
    assert jobs["redis"]["static_configs"] == [{"targets": [f"{ip['redis']}:9121"]}]
    assert jobs["postgres"]["static_configs"] == [{"targets": [f"{ip['postgres']}:9187"]}]
    for job in jobs.values():
        assert {"target_label": "namespace", "replacement": namespace} in job["relabel_configs"]
    # The colour Services get a ClusterIP (headless ones have none to scrape).
    for color in ("blue", "green"):
        assert "clusterIP" not in no_dns.find("Service", f"immune-core-{color}-pods")["spec"]


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
