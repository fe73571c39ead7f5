"""The Pulumi program leaves the service's adaptive layer at its default (on): no container it renders
sets ``IMMUNE_ADAPTIVE_LAYER`` or shrinks the cell caps below the eight default cells, and a rollout
cannot turn the layer off per colour (it is not in the override allow-list)."""

from __future__ import annotations

from typing import Any

import pytest
from immune_infra.config import check_env_overrides

from tests.infra.support import render

# The service settings that decide the initial population (docs/service.md): left to the service.
POPULATION_ENV = {"IMMUNE_ADAPTIVE_LAYER", "IMMUNE_MAX_CELLS", "IMMUNE_MAX_CELLS_PER_TYPE"}


def _containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_rendered_container_overrides_the_initial_population(stack: str) -> None:
    rendered = render(stack)
    workloads = [*rendered.of_kind("Deployment"), *rendered.of_kind("Job")]
    assert any(m["metadata"]["name"].startswith("immune-core-") for m in workloads)  # no data is no pass
    for manifest in workloads:
        for container in _containers(manifest):
            names = {item["name"] for item in container.get("env", [])}
            assert not names & POPULATION_ENV, (manifest["metadata"]["name"], names & POPULATION_ENV)


@pytest.mark.parametrize("name", sorted(POPULATION_ENV))
def test_a_rollout_cannot_override_the_population_settings(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} cannot be overridden"):
        check_env_overrides({name: "false" if name == "IMMUNE_ADAPTIVE_LAYER" else "6"})
