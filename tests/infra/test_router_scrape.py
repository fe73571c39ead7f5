"""`monitoring.routerScrapeTarget`: the bundled Prometheus scrapes the cluster's router (job `router`),
keeps only this namespace's traefik_service_* series, may reach that one address and port, and the
stack says so in its `routerScrapeJob` output. Absent: none of the three."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from immune_infra.config import ConfigError, parse_settings
from immune_infra.local_cluster import read_versions, router_scrape_target
from immune_infra.monitoring import ROUTER_JOB
from immune_infra.render import RenderedStack, merge, stack_settings

from tests.infra.support import render

TARGET = "10.244.0.1:18483"
NAMESPACE = "immune-staging"
# The `service` label values the router exported on the local cluster (tests/cluster/test_router.py,
# Traefik v3.7.13): the Gateway API leaves of the stable, preview and baseline Services (the last number
# is the backendRef's index in the route, `ep-gateway-<i>` the route rule's), the ingress-nginx ones.
GATEWAY_PREFIX = (
    "httproute-immune-staging-immune-core-gw-immune-gateway-immune-gateway-ep-gateway-1-5dfd3e7cabcfd72ee1d8"
)
OURS = (
    f"{GATEWAY_PREFIX}-svc-immune-staging-immune-core-0@kubernetesgateway",
    f"{GATEWAY_PREFIX}-svc-immune-staging-immune-core-preview-1@kubernetesgateway",
    f"{GATEWAY_PREFIX}-svc-immune-staging-immune-core-baseline-2@kubernetesgateway",
    "immune-staging-immune-core-immune-core-http@kubernetesingressnginx",
    "immune-staging-immune-core-immune-core-http-canary@kubernetesingressnginx",
)
THEIRS = (
    f"{GATEWAY_PREFIX}-svc-immune-prod-immune-core-1@kubernetesgateway".replace(
        "httproute-immune-staging", "httproute-immune-prod"
    ),
    "immune-prod-immune-core-immune-core-http@kubernetesingressnginx",
    # The stack's own namespace only as the route's, not as the backend Service's.
    f"{GATEWAY_PREFIX}-svc-other-immune-core-1@kubernetesgateway",
    "ping@internal",
)


def with_target(target: Any) -> dict[str, Any]:
    return {"monitoring": {"routerScrapeTarget": target}}


def scrape_jobs(rendered: RenderedStack) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(rendered.find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    return {job["job_name"]: job for job in config["scrape_configs"]}


def prometheus_egress(rendered: RenderedStack) -> list[dict[str, Any]]:
    return rendered.find("NetworkPolicy", "allow-prometheus")["spec"]["egress"]


def kept(job: dict[str, Any], name: str, service: str) -> bool:
    """Prometheus's `keep` over the job's metric_relabel_configs (RE2, anchored; the regex is also valid
    Python syntax with the same meaning)."""
    for rule in job["metric_relabel_configs"]:
        assert rule["action"] == "keep"
        values = {"__name__": name, "service": service}
        joined = rule["separator"].join(values[label] for label in rule["source_labels"])
        if not re.fullmatch(rule["regex"], joined):
            return False
    return True


@pytest.mark.parametrize(
    "bad",
    ["10.244.0.1", "10.244.0.1:0", "10.244.0.1:65536", "10.244.0.1:http", ":18483", "Bad_Host!:80", 18483],
)
def test_a_bad_target_is_refused_with_its_path(bad: Any) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings(merge(stack_settings("staging"), with_target(bad)))
    assert "settings.monitoring.routerScrapeTarget" in str(refused.value), refused.value


def test_good_targets_parse() -> None:
    for good in (TARGET, "router.example.internal:9100", "10.0.0.1:1", "10.0.0.1:65535"):
        settings = parse_settings(merge(stack_settings("staging"), with_target(good)))
        assert settings.monitoring.router_scrape_target == good


def test_the_operator_mode_refuses_a_router_target() -> None:
    """The operator's Prometheus is configured outside this program: a target here would scrape nothing."""
    with pytest.raises(ConfigError, match="routerScrapeTarget needs mode bundled"):
        parse_settings(
            merge(
                stack_settings("staging"),
                {"monitoring": {"mode": "operator", **with_target(TARGET)["monitoring"]}},
            )
        )


def test_absent_there_is_no_router_job_rule_or_output(staging: RenderedStack) -> None:
    assert ROUTER_JOB not in scrape_jobs(staging)
    assert not [peer for rule in prometheus_egress(staging) for peer in rule["to"] if "ipBlock" in peer]
    assert staging.exports.get("routerScrapeJob") is None


def test_set_the_router_job_keeps_only_this_namespaces_services() -> None:
    rendered = render("staging", with_target(TARGET))
    job = scrape_jobs(rendered)[ROUTER_JOB]
    assert job["static_configs"] == [{"targets": [TARGET]}]
    assert job["metrics_path"] == "/metrics"
    assert job["relabel_configs"] == [{"target_label": "namespace", "replacement": NAMESPACE}]
    for service in OURS:
        assert kept(job, "traefik_service_requests_total", service), service
        assert kept(job, "traefik_service_request_duration_seconds_bucket", service), service
    for service in THEIRS:
        assert not kept(job, "traefik_service_requests_total", service), service
    # The router's other series (its entry points, its process) are not the stack's.
    assert not kept(job, "traefik_entrypoint_requests_total", "")
    assert not kept(job, "process_cpu_seconds_total", "")
    assert rendered.exports["routerScrapeJob"] == ROUTER_JOB


def test_set_prometheus_may_reach_that_address_and_port_only() -> None:
    absent = prometheus_egress(render("staging"))
    rules = prometheus_egress(render("staging", with_target(TARGET)))
    added = [rule for rule in rules if rule not in absent]
    assert added == [
        {"to": [{"ipBlock": {"cidr": "10.244.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 18483}]}
    ]
    # Nobody else gained anything: every other policy is the same.
    with_router = render("staging", with_target(TARGET))
    others = {
        p["metadata"]["name"]: p["spec"]
        for p in with_router.of_kind("NetworkPolicy")
        if p["metadata"]["name"] != "allow-prometheus"
    }
    assert others == {
        p["metadata"]["name"]: p["spec"]
        for p in render("staging").of_kind("NetworkPolicy")
        if p["metadata"]["name"] != "allow-prometheus"
    }


def test_a_dns_name_opens_only_its_port() -> None:
    """A policy matches addresses, not names: any address, on that one port."""
    rules = prometheus_egress(render("staging", with_target("router.example.internal:9100")))
    assert {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 9100}]} in rules


def test_the_config_with_the_router_job_passes_promtool(promtool: str, tmp_path: Path) -> None:
    rendered = render("staging", with_target(TARGET))
    config = yaml.safe_load(rendered.find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    config["rule_files"] = []
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_local_cluster_scrapes_its_router_on_the_bridge() -> None:
    versions = read_versions()
    assert router_scrape_target(versions) == f"{versions['CNI_BRIDGE_IP']}:{versions['ROUTER_METRICS_PORT']}"
    assert router_scrape_target(versions) == TARGET
