"""The program against the service it deploys: CLI commands, settings, metric names."""

from __future__ import annotations

import json
import re

import yaml
from immune_core.cli import build_parser
from immune_core.observability.metrics import Metrics
from immune_core.settings import Settings
from immune_infra.monitoring import dashboard_json
from immune_infra.render import RenderedStack

METRIC = re.compile(r"\b(immune_[a-z0-9_]+)")


def exported_series() -> set[str]:
    """Every series name the service's registry can expose (histogram/counter suffixes included)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total", "_created")}
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def test_alert_rules_use_only_exported_metrics(staging: RenderedStack) -> None:
    rules = yaml.safe_load(staging.find("ConfigMap", "prometheus-rules")["data"]["immune-core-slo.yaml"])
    used = {
        name for group in rules["groups"] for rule in group["rules"] for name in METRIC.findall(rule["expr"])
    }
    assert used, "the SLO rules reference no service metric"
    assert used <= exported_series(), used - exported_series()


def test_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(dashboard_json())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    assert len(used) >= 5
    assert used <= exported_series(), used - exported_series()


def test_latency_and_error_slos_exclude_probes_and_scrapes(staging: RenderedStack) -> None:
    rules = yaml.safe_load(staging.find("ConfigMap", "prometheus-rules")["data"]["immune-core-slo.yaml"])
    by_name = {rule["alert"]: rule["expr"] for rule in rules["groups"][0]["rules"]}
    for alert in ("ImmuneLatencyP95High", "ImmuneErrorRatioHigh"):
        assert 'route!~"/health/.*|/metrics"' in by_name[alert]


def test_container_commands_parse_with_the_service_cli(staging: RenderedStack) -> None:
    parser = build_parser()
    deployment = staging.find("Deployment", "immune-core-blue")["spec"]["template"]["spec"]["containers"][0]
    serve = parser.parse_args(deployment["command"][1:])
    assert (serve.command, serve.host, serve.port) == ("serve", "0.0.0.0", 8080)
    assert deployment["ports"][0]["containerPort"] == serve.port
    job = next(
        j for j in staging.of_kind("Job") if j["metadata"]["name"].startswith("immune-core-migrate-blue")
    )
    migrate = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert migrate[0] == "immune-core" and parser.parse_args(migrate[1:]).command == "migrate"


def test_every_immune_env_var_is_a_service_setting(stack: RenderedStack) -> None:
    fields = set(Settings.model_fields)
    for manifest in stack.manifests:
        spec = manifest.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        for container in spec["containers"]:
            for env in container.get("env", []):
                if env["name"].startswith("IMMUNE_"):
                    assert env["name"].removeprefix("IMMUNE_").lower() in fields, env["name"]
