"""The platform gateway on Kubernetes, as the Pulumi program renders it (docs/infra.md "The platform
gateway"): HTTPRoute immune-core-platform sends /api/immune/* to the stable core's /api/v1/*, and with
`routing.gatewayMiddlewares: traefik` (the default) its auth, rate limit and aggregated health are Traefik
Middleware objects attached by Gateway API ExtensionRef filters. The end-to-end behaviour on the real
local cluster is tests/cluster/test_deploy.py's gateway case."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from immune_infra.config import ConfigError, parse_settings
from immune_infra.render import merge

from tests.infra.crd_schema import _rewrite
from tests.infra.support import render, rollout

REPO = Path(__file__).resolve().parents[2]
ROUTE = "immune-core-platform"
API, RATE, HEALTH = (f"{ROUTE}-api", f"{ROUTE}-rate-limit", f"{ROUTE}-health")


def _rendered(weight: int = 0, **routing: Any) -> Any:
    return render(
        "staging", rollout("blue", weight, mode="gateway", gatewayNamespace="gateway-system", **routing)
    )


def _platform(weight: int = 0, **routing: Any) -> dict[str, Any]:
    route: dict[str, Any] = _rendered(weight, **routing).find("HTTPRoute", ROUTE)
    return route


def _middlewares(**routing: Any) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in _rendered(**routing).of_kind("Middleware")}


def _rules(route: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["matches"][0]["path"]["value"]: rule for rule in route["spec"]["rules"]}


def _extension_refs(rule: dict[str, Any]) -> list[str]:
    return [f["extensionRef"]["name"] for f in rule.get("filters", []) if f["type"] == "ExtensionRef"]


def _rewrite_of(rule: dict[str, Any]) -> str:
    path = next(f["urlRewrite"]["path"] for f in rule["filters"] if f["type"] == "URLRewrite")
    return str(path.get("replacePrefixMatch") or path["replaceFullPath"])


def test_api_immune_is_rewritten_to_the_stable_cores_api_and_probes() -> None:
    route = _platform()
    assert route["spec"]["parentRefs"] == [{"name": "immune-gateway", "namespace": "gateway-system"}]
    assert route["spec"]["hostnames"] == ["immune.staging.example.com"]
    rewrites = {
        value: (_rewrite_of(rule), [ref["name"] for ref in rule["backendRefs"]])
        for value, rule in _rules(route).items()
    }
    assert rewrites == {
        "/api/immune/health": ("/health", ["immune-core"]),
        "/api/immune": ("/api/v1", ["immune-core"]),
        "/health": ("/health/ready", ["immune-core"]),
    }


def test_the_api_is_guarded_probes_are_not_authenticated_and_health_is_aggregated() -> None:
    rules = _rules(_platform())
    # Order matters (Traefik applies filters in order): the bearer check before the limiter, both
    # before the rewrite; the probes only rate-limited, like the local stack's gateway.
    assert _extension_refs(rules["/api/immune"]) == [API, RATE]
    assert [f["type"] for f in rules["/api/immune"]["filters"]][-1] == "URLRewrite"
    assert _extension_refs(rules["/api/immune/health"]) == [RATE]
    health = rules["/health"]
    assert health["matches"][0] == {"path": {"type": "Exact", "value": "/health"}, "method": "GET"}
    assert _extension_refs(health) == [HEALTH]
    for rule in rules.values():
        for ref in rule.get("filters", []):
            if ref["type"] == "ExtensionRef":
                assert ref["extensionRef"]["group"] == "traefik.io"
                assert ref["extensionRef"]["kind"] == "Middleware"


def test_every_extension_ref_names_a_rendered_middleware_in_the_routes_namespace() -> None:
    rendered = _rendered()
    route = rendered.find("HTTPRoute", ROUTE)
    middlewares = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m for m in rendered.of_kind("Middleware")
    }
    named = {ref for rule in route["spec"]["rules"] for ref in _extension_refs(rule)}
    assert named == {API, RATE, HEALTH}
    assert {(route["metadata"]["namespace"], name) for name in named} == set(middlewares)
    plugins = {name: m["spec"].get("plugin") for (_, name), m in middlewares.items()}
    assert plugins[API] == {"immunegateway": {"mode": "api", "service": "immune_core"}}
    assert plugins[HEALTH] == {"immunegateway": {"mode": "health", "service": "immune_core"}}


def test_the_rate_limit_comes_from_the_stack_config() -> None:
    default = _middlewares()[RATE]["spec"]["rateLimit"]
    assert default == {
        "average": 1000,
        "period": "10s",
        "burst": 1000,
        "sourceCriterion": {"ipStrategy": {"depth": 0}},
    }
    configured = _middlewares(gatewayRateLimitPer10s=37)[RATE]["spec"]["rateLimit"]
    assert (configured["average"], configured["burst"], configured["period"]) == (37, 37, "10s")


@pytest.mark.parametrize("bad", [0, -5, "many"])
def test_a_bad_rate_limit_is_refused_naming_the_key(bad: Any) -> None:
    settings = yaml.safe_load((REPO / "Pulumi.staging.yaml").read_text())["config"][
        "active-immune-core:settings"
    ]
    with pytest.raises(ConfigError, match="gatewayRateLimitPer10s"):
        parse_settings(merge(settings, {"routing": {"gatewayRateLimitPer10s": bad}}))


@cache
def _middleware_validator() -> jsonschema.protocols.Validator:
    crds = yaml.safe_load_all((REPO / "cluster" / "router" / "crds" / "traefik-v3.7.13.yaml").read_text())
    crd = next(d for d in crds if d and d["metadata"]["name"] == "middlewares.traefik.io")
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")["schema"]["openAPIV3Schema"]
    schema = _rewrite(copy.deepcopy(schema))
    return jsonschema.Draft202012Validator(schema)


def test_middlewares_validate_against_the_routers_vendored_crd_and_a_broken_one_does_not() -> None:
    middlewares = _middlewares()
    for middleware in middlewares.values():
        assert list(_middleware_validator().iter_errors(middleware)) == [], middleware["metadata"]["name"]
    broken = copy.deepcopy(middlewares[RATE])
    broken["spec"]["rateLimit"]["average"] = "a thousand"
    assert list(_middleware_validator().iter_errors(broken))


def test_the_router_serves_the_vendored_crds_of_its_pinned_version() -> None:
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "cluster" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert (REPO / "cluster" / "router" / "crds" / f"traefik-{versions['TRAEFIK_VERSION']}.yaml").is_file()


def test_without_traefik_middlewares_the_route_is_plain_and_nothing_else_is_declared() -> None:
    route = _platform(gatewayMiddlewares="none")
    assert not _rendered(gatewayMiddlewares="none").of_kind("Middleware")
    assert set(_rules(route)) == {"/api/immune/health", "/api/immune"}
    assert not [ref for rule in route["spec"]["rules"] for ref in _extension_refs(rule)]


def test_a_canary_does_not_move_the_platform_path() -> None:
    assert _platform(0) == _platform(50)


def test_nginx_mode_has_no_platform_route_and_no_middlewares() -> None:
    rendered = render("staging")
    assert not [r for r in rendered.of_kind("HTTPRoute") if r["metadata"]["name"] == ROUTE]
    assert not rendered.of_kind("Middleware")
