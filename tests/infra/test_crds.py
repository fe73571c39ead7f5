"""The published CRDs (infra/crds/, immune_infra.crds): what the program applies, and the program's own
HTTPRoutes, ServiceMonitors and PrometheusRules validated against those real schemas."""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from immune_infra.crds import CRD_DIR, definition_for, definitions
from immune_infra.render import REPOSITORY_ROOT, RenderedStack

from tests.infra.crd_schema import errors
from tests.infra.support import render, rollout

GATEWAY_OPERATOR: dict[str, Any] = {
    "rollout": {
        **rollout("blue", 30)["rollout"],
        "baseline": {"image": "ghcr.io/active-immune-core/immune-core@sha256:" + "ab" * 32, "replicas": 1},
    },
    "routing": {"mode": "gateway", "gatewayNamespace": "gateway-system"},
    "monitoring": {"mode": "operator"},
}
CUSTOM_KINDS = ("HTTPRoute", "ServiceMonitor", "PrometheusRule")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPOSITORY_ROOT / "cluster" / "versions.env").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pins[key] = value
    return pins


def _crds(rendered: RenderedStack) -> dict[str, dict[str, Any]]:
    return {crd["metadata"]["name"]: crd for crd in rendered.of_kind("CustomResourceDefinition")}


@pytest.fixture(scope="module")
def gateway_operator() -> RenderedStack:
    return render("prod", GATEWAY_OPERATOR)


def test_vendored_files_are_the_pinned_published_releases() -> None:
    pins = _pins()
    gateway = definitions("gateway-api")
    assert {
        crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] for crd in gateway
    } == {pins["GATEWAY_API_VERSION"]}
    assert {crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] for crd in gateway} == {
        "standard"
    }
    operator = definitions("prometheus-operator")
    assert {crd["metadata"]["annotations"]["operator.prometheus.io/version"] for crd in operator} == {
        pins["PROMETHEUS_OPERATOR_VERSION"].removeprefix("v")
    }
    assert {crd["spec"]["names"]["kind"] for crd in operator} == {"ServiceMonitor", "PrometheusRule"}
    assert {"HTTPRoute", "Gateway", "GatewayClass", "ReferenceGrant", "GRPCRoute"} <= {
        crd["spec"]["names"]["kind"] for crd in gateway
    }
    notice = (CRD_DIR / "NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice and "GATEWAY_API_VERSION" in notice
    for group in ("gateway-api", "prometheus-operator"):
        assert "Apache License" in (CRD_DIR / group / "LICENSE").read_text()


@pytest.mark.slow
def test_refresh_check_matches_the_module_proxy() -> None:
    """The copies are byte for byte the files of the pinned Go modules (fetched, checksum-verified)."""
    if shutil.which("go") is None:
        pytest.fail("go is required to verify the vendored CRDs against their modules")
    result = subprocess.run(
        ["bash", str(CRD_DIR / "refresh.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_program_applies_the_published_definitions_unchanged(gateway_operator: RenderedStack) -> None:
    applied = _crds(gateway_operator)
    vendored = [*definitions("gateway-api"), *definitions("prometheus-operator")]
    assert sorted(applied) == sorted(crd["metadata"]["name"] for crd in vendored)
    for crd in vendored:
        # The whole published object, schemas included, reaches the provider as written upstream
        # (no key renamed on the way: the PrometheusRule schema has snake_case field names).
        assert applied[crd["metadata"]["name"]] == crd
    rule_schema = applied["prometheusrules.monitoring.coreos.com"]["spec"]["versions"][0]["schema"]
    rule_fields = rule_schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["groups"]["items"]
    assert {"partial_response_strategy", "query_offset"} <= set(rule_fields["properties"])


def test_definitions_are_retained_on_delete_and_custom_objects_wait_for_them(
    gateway_operator: RenderedStack,
) -> None:
    crds = [res for res in gateway_operator.resources if res.inputs.get("kind") == "CustomResourceDefinition"]
    assert crds and all(res.retain_on_delete for res in crds)
    provider = next(res for res in gateway_operator.resources if res.type == "pulumi:providers:kubernetes")
    assert all(res.provider.startswith(provider.urn + "::") for res in crds)
    by_kind = {res.inputs["spec"]["names"]["kind"]: res.urn for res in crds}
    custom = [res for res in gateway_operator.resources if res.inputs.get("kind") in CUSTOM_KINDS]
    assert len(custom) >= 6
    for res in custom:
        assert by_kind[res.inputs["kind"]] in res.dependencies, res.name


def test_only_the_groups_a_stack_uses_are_applied() -> None:
    assert _crds(render("staging")) == {}  # nginx routing, bundled monitoring: no custom kinds
    gateway_only = _crds(render("staging", {"routing": {"mode": "gateway"}}))
    assert gateway_only and all(name.endswith(".gateway.networking.k8s.io") for name in gateway_only)
    operator_only = _crds(render("staging", {"monitoring": {"mode": "operator"}}))
    assert sorted(operator_only) == [
        "prometheusrules.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
    ]
    # A cluster whose controller/operator installs its own copies.
    left_out = render("prod", {**GATEWAY_OPERATOR, "crds": {"install": False}})
    assert _crds(left_out) == {}
    assert left_out.of_kind("HTTPRoute") and left_out.of_kind("ServiceMonitor")


@pytest.mark.parametrize(
    "overrides",
    [
        GATEWAY_OPERATOR,
        {**rollout("green", 0), "routing": {"mode": "gateway"}, "monitoring": {"mode": "operator"}},
    ],
    ids=["canary-baseline", "no-canary"],
)
def test_custom_objects_validate_against_the_published_schemas(overrides: dict[str, Any]) -> None:
    rendered = render("prod", overrides)
    objects = [manifest for manifest in rendered.manifests if manifest["kind"] in CUSTOM_KINDS]
    assert {manifest["kind"] for manifest in objects} == set(CUSTOM_KINDS)
    for manifest in objects:
        assert errors(manifest) == [], manifest["metadata"]["name"]


def _first(rendered: RenderedStack, kind: str) -> dict[str, Any]:
    return copy.deepcopy(rendered.of_kind(kind)[0])


def test_schema_validation_catches_broken_custom_objects(gateway_operator: RenderedStack) -> None:
    route = _first(gateway_operator, "HTTPRoute")
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000
    assert any("70000" in message for message in errors(route))
    route = _first(gateway_operator, "HTTPRoute")
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    assert any("-1" in message for message in errors(route))
    route = _first(gateway_operator, "HTTPRoute")
    route["spec"]["hostnames"] = ["Not A Host!"]
    assert errors(route)
    monitor = _first(gateway_operator, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert any("interval" in message for message in errors(monitor))
    rule = _first(gateway_operator, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert any("for" in message for message in errors(rule))
    rule = _first(gateway_operator, "PrometheusRule")
    rule["spec"]["groups"][0]["partial_response_strategy"] = "ignore"
    assert errors(rule)  # the Go pattern (?i)(abort|warn) applies, rewritten for Python
    del rule["spec"]["groups"][0]["name"]
    assert any("'name' is a required property" in message for message in errors(rule))


def test_definition_lookup_errors_are_clear() -> None:
    with pytest.raises(KeyError, match="no vendored CustomResourceDefinition defines Ingress"):
        definition_for("Ingress")
    with pytest.raises(ValueError, match="unknown CRD group"):
        definitions("cert-manager")
    loaded = yaml.safe_load(
        (CRD_DIR / "gateway-api" / "gateway.networking.k8s.io_httproutes.yaml").read_text()
    )
    assert definition_for("HTTPRoute") == loaded
