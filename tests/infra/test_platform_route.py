"""The platform gateway's path to the core on Kubernetes: /api/immune/* -> the stable core's /api/v1/*."""

from __future__ import annotations

from typing import Any

from tests.infra.support import render, rollout


def _platform(weight: int = 0) -> dict[str, Any]:
    rendered = render("staging", rollout("blue", weight, mode="gateway", gatewayNamespace="gateway-system"))
    route: dict[str, Any] = rendered.find("HTTPRoute", "immune-core-platform")
    return route


def test_api_immune_is_rewritten_to_the_stable_cores_api_and_probes() -> None:
    route = _platform()
    assert route["spec"]["parentRefs"] == [{"name": "immune-gateway", "namespace": "gateway-system"}]
    assert route["spec"]["hostnames"] == ["immune.staging.example.com"]
    rewrites = {
        rule["matches"][0]["path"]["value"]: (
            rule["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"],
            [ref["name"] for ref in rule["backendRefs"]],
        )
        for rule in route["spec"]["rules"]
    }
    assert rewrites == {
        "/api/immune/health": ("/health", ["immune-core"]),
        "/api/immune": ("/api/v1", ["immune-core"]),
    }


def test_a_canary_does_not_move_the_platform_path() -> None:
    assert _platform(0) == _platform(50)


def test_nginx_mode_has_no_platform_route() -> None:
    assert not [
        r for r in render("staging").of_kind("HTTPRoute") if r["metadata"]["name"] == "immune-core-platform"
    ]
