"""Rollout state as config: what `activeColor` and `canaryWeight` change in the rendered objects.

Each test diffs every object the program declares between two renders, so "only X changes" is
checked against the whole stack, not just the object we expect to move.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from immune_infra.render import RenderedStack

from tests.infra.support import render, rollout, stack_diff


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("weight", [0, 30])
def test_switching_active_colour_only_moves_service_selectors(stack: str, weight: int) -> None:
    blue = render(stack, rollout("blue", weight))
    green = render(stack, rollout("green", weight))
    changes = stack_diff(blue, green)
    assert changes == {
        ("Service", "immune-core"): [".spec.selector.immune.vertice.dev/color"],
        ("Service", "immune-core-preview"): [".spec.selector.immune.vertice.dev/color"],
        # The services' side of the switch: the activation Job names the new colour.
        ("Job", "immune-core-activate-blue"): ["<removed>"],
        ("Job", "immune-core-activate-green"): ["<added>"],
    }
    job = green.find("Job", "immune-core-activate-green")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["immune-core", "activate", "green"]
    assert blue.find("Service", "immune-core")["spec"]["selector"]["immune.vertice.dev/color"] == "blue"
    assert green.find("Service", "immune-core")["spec"]["selector"]["immune.vertice.dev/color"] == "green"
    # The preview Service is, by definition, the other colour.
    assert (
        green.find("Service", "immune-core-preview")["spec"]["selector"]["immune.vertice.dev/color"] == "blue"
    )
    assert (blue.exports["activeColor"], green.exports["activeColor"]) == ("blue", "green")
    assert (blue.exports["previewColor"], green.exports["previewColor"]) == ("green", "blue")


def test_switching_colour_never_touches_deployments_or_their_selectors() -> None:
    blue, green = render("prod", rollout("blue")), render("prod", rollout("green"))
    for name in ("immune-core-blue", "immune-core-green"):
        assert blue.find("Deployment", name) == green.find("Deployment", name)


def test_new_image_for_one_colour_changes_only_that_colour() -> None:
    base = render("staging")
    image = "ghcr.io/active-immune-core/immune-core@sha256:" + "b" * 64
    updated = render("staging", {"rollout": {"images": {"green": image}}})
    changes = stack_diff(base, updated)
    assert set(changes) == {
        ("Deployment", "immune-core-green"),
        # The migration Job is immutable, so the new image is a new Job (name carries the image's digest).
        *[key for key in changes if key[0] == "Job" and key[1].startswith("immune-core-migrate-green-")],
    }
    assert changes[("Deployment", "immune-core-green")] == [".spec.template.spec.containers[0].image"]
    assert updated.exports["images"]["green"] == image


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_canary_weight_zero_declares_no_canary_route(stack: str) -> None:
    """The canary Ingress stays (the switch updates it in order, tests/infra/test_switch_order.py) but
    routes nothing: weight 0, and no header rule that would force requests to the preview colour."""
    rendered = render(stack, rollout("blue", 0))
    names = {m["metadata"]["name"] for m in rendered.of_kind("Ingress")}
    assert names == {"immune-core", "immune-core-preview", "immune-core-canary"}
    annotations = rendered.find("Ingress", "immune-core-canary")["metadata"]["annotations"]
    assert annotations == {
        # Not awaited: a router may publish its status only once the preview Service has endpoints.
        "pulumi.com/skipAwait": "true",
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "0",
        "nginx.ingress.kubernetes.io/canary-weight-total": "100",
    }


@pytest.mark.parametrize("weight", [10, 50, 100])
def test_canary_weight_sets_nginx_canary_ingress(weight: int) -> None:
    rendered = render("prod", rollout("blue", weight))
    canary = rendered.find("Ingress", "immune-core-canary")
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == str(weight)
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Immune-Canary"
    stable = rendered.find("Ingress", "immune-core")
    # nginx pairs a canary with the main Ingress of the same host and path.
    assert canary["spec"]["rules"][0]["host"] == stable["spec"]["rules"][0]["host"] == "immune.example.com"
    backend = canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "immune-core-preview"
    assert stable["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "immune-core"
    assert canary["spec"]["tls"] == stable["spec"]["tls"]
    assert rendered.exports["canaryWeight"] == weight


def test_canary_steps_change_only_the_canary_ingress() -> None:
    steps = [render("staging", rollout("blue", weight)) for weight in (0, 10, 50, 100)]
    # Into a canary: the weight, and the header rule that forces the preview colour.
    assert stack_diff(steps[0], steps[1]) == {
        ("Ingress", "immune-core-canary"): [
            ".metadata.annotations.nginx.ingress.kubernetes.io/canary-by-header",
            ".metadata.annotations.nginx.ingress.kubernetes.io/canary-weight",
        ]
    }
    for before, after in itertools.pairwise(steps[1:]):
        assert stack_diff(before, after) == {
            ("Ingress", "immune-core-canary"): [
                ".metadata.annotations.nginx.ingress.kubernetes.io/canary-weight"
            ]
        }


def _route_backends(rendered: RenderedStack) -> list[dict[str, Any]]:
    route = rendered.find("HTTPRoute", "immune-core")
    return route["spec"]["rules"][-1]["backendRefs"]


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (0, [("immune-core", 100)]),
        (10, [("immune-core", 90), ("immune-core-preview", 10)]),
        (50, [("immune-core", 50), ("immune-core-preview", 50)]),
        (100, [("immune-core", 0), ("immune-core-preview", 100)]),
    ],
)
def test_gateway_mode_weights_httproute_backends(weight: int, expected: list[tuple[str, int]]) -> None:
    rendered = render("staging", rollout("blue", weight, mode="gateway", gatewayNamespace="gateway-system"))
    assert not rendered.of_kind("Ingress")
    assert [(ref["name"], ref["weight"]) for ref in _route_backends(rendered)] == expected
    route = rendered.find("HTTPRoute", "immune-core")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "immune-gateway", "namespace": "gateway-system"}]
    assert route["spec"]["hostnames"] == ["immune.staging.example.com"]
    header_rules = [rule for rule in route["spec"]["rules"] if "headers" in rule["matches"][0]]
    assert len(header_rules) == (1 if weight else 0)
    preview = rendered.find("HTTPRoute", "immune-core-preview")
    assert preview["spec"]["hostnames"] == ["preview.immune.staging.example.com"]


def test_gateway_mode_colour_switch_still_only_moves_selectors() -> None:
    blue = render("staging", rollout("blue", 50, mode="gateway"))
    green = render("staging", rollout("green", 50, mode="gateway"))
    assert set(stack_diff(blue, green)) == {
        ("Service", "immune-core"),
        ("Service", "immune-core-preview"),
        ("Job", "immune-core-activate-blue"),
        ("Job", "immune-core-activate-green"),
    }
