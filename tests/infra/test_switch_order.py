"""The blue/green switch is ordered by the program's dependencies, checked in the real engine's state.
Pulumi updates a resource only after those it depends on, so in the switch's one `up`:

- gateway mode: the stable HTTPRoute depends on the stable Service, and the preview Service on the
  stable HTTPRoute. The stable Service moves to the new colour first, then the route drops the preview
  backend, and only then does the preview Service move to the old colour;
- nginx mode: the canary Ingress (always declared, weight 0 outside a canary) depends on the stable
  Service, and the preview Service on the canary Ingress. The stable Service moves first, then the
  canary Ingress drops to weight 0, and only then does the preview Service move to the old colour.

Either way the stable host never sends a request to a Service that selects the old colour (issue 10
item 2). Without the declared order the tests fail: the preview Service would wait for nothing (as it
did in nginx mode when the canary Ingress was deleted at the switch, and Pulumi deletes last).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.engine import EngineProject

pytestmark = pytest.mark.engine

SETTINGS = "active-immune-core:settings"
STABLE = "kubernetes:core/v1:Service::immune-core-stable"
PREVIEW = "kubernetes:core/v1:Service::immune-core-preview"


def dependencies(project: EngineProject, mode: str, weight: int) -> dict[str, set[str]]:
    """`<type>::<name>` -> the `<type>::<name>` of each resource it depends on, after an `up` (render
    mode) of staging in routing `mode` with a canary at `weight` %."""
    stack_file = project.stack_file("staging")
    document: dict[str, Any] = yaml.safe_load(stack_file.read_text())
    settings = document["config"][SETTINGS]
    settings["routing"]["mode"] = mode
    settings["rollout"]["canaryWeight"] = weight
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    target = project.target("staging")
    target.up()
    resources = target.stack().export_stack().deployment["resources"]

    def short(urn: str) -> str:
        kind, name = urn.split("::")[-2:]
        return f"{kind.split('$')[-1]}::{name}"

    return {short(r["urn"]): {short(d) for d in r.get("dependencies", [])} for r in resources}


def test_gateway_switch_moves_stable_then_the_route_then_preview(engine_project: EngineProject) -> None:
    gateway = dependencies(engine_project, "gateway", 50)
    route = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute::immune-core-stable-route"
    assert STABLE in gateway[route], gateway[route]
    assert route in gateway[PREVIEW], gateway[PREVIEW]


def test_nginx_switch_moves_stable_then_the_canary_ingress_then_preview(
    engine_project: EngineProject,
) -> None:
    # Weight 0 is where the switch lands: the canary Ingress must still be there (an update Pulumi
    # can order, not a delete, which it runs last) and sit between the two Services.
    nginx = dependencies(engine_project, "nginx", 0)
    canary = "kubernetes:networking.k8s.io/v1:Ingress::immune-core-canary-ingress"
    assert canary in nginx, "no canary Ingress at weight 0: the switch would delete it, last"
    assert STABLE in nginx[canary], nginx[canary]
    assert canary in nginx[PREVIEW], nginx[PREVIEW]
