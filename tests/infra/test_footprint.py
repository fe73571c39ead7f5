"""immune_infra.footprint: the worst case read from the settings equals the one read from the rendered
objects (so the settings model's quota check counts every pod the program declares), and the settings
model refuses a stack whose worst case, a fresh baseline included, exceeds its ResourceQuota."""

from __future__ import annotations

from typing import Any

import pytest
from immune_infra.config import ConfigError, parse_settings
from immune_infra.footprint import over_quota, quantity, settings_footprint, workloads_footprint
from immune_infra.render import merge, stack_settings

from tests.infra.support import assert_fits_the_quota, render

STABLE_IMAGE = "ghcr.io/active-immune-core/immune-core:0.1.0"
# Prod's quota before the baseline was sized into it: a baseline of replicas.max did not fit.
OLD_PROD_QUOTA = {"quota": {"requestsMemory": "24Gi", "limitsCpu": "40"}}


def baseline(stack: str, which: str) -> dict[str, Any]:
    replicas = stack_settings(stack)["app"]["replicas"][which]
    return {
        "rollout": {
            "activeColor": "blue",
            "canaryWeight": 50,
            "baseline": {"image": STABLE_IMAGE, "replicas": replicas},
        }
    }


VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("staging", {}),
    ("prod", {}),
    ("staging", {"rollout": {"replicas": {"green": 0}}, "monitoring": {"grafana": False}}),
    ("prod", {"monitoring": {"mode": "operator"}, "routing": {"mode": "gateway"}}),
]


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS)
def test_the_settings_count_every_pod_the_program_declares(stack: str, overrides: dict[str, Any]) -> None:
    """Good case on every variant; a workload added or resized in the program without the footprint
    (or the reverse) makes the two differ. A colour scaled to 0 (no HPA) still counts at its maximum in
    the settings reading (the pipeline scales it back up), so that variant compares the rest."""
    settings = parse_settings(merge(stack_settings(stack), overrides))
    from_settings = settings_footprint(settings)
    from_objects = workloads_footprint(render(stack, overrides).manifests)
    if settings.replicas_for("green") == 0:
        colour_cpu = (settings.app.replicas.max + 1) * quantity(settings.app.resources.cpu_request)
        assert from_settings["pods"] - from_objects["pods"] == settings.app.replicas.max + 1
        assert from_settings["requests.cpu"] - from_objects["requests.cpu"] == pytest.approx(colour_cpu)
        return
    assert from_settings == pytest.approx(from_objects), (from_settings, from_objects)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_baseline_of_replicas_max_fits_and_is_counted(stack: str) -> None:
    overrides = baseline(stack, "max")
    settings = parse_settings(merge(stack_settings(stack), overrides))
    rendered = render(stack, overrides)
    assert settings_footprint(settings) == pytest.approx(workloads_footprint(rendered.manifests))
    assert_fits_the_quota(rendered)
    assert over_quota(settings_footprint(settings), settings.quota) == []


def test_a_baseline_beyond_the_quota_is_refused_naming_the_numbers() -> None:
    """Bad case: prod's former quota with a baseline of replicas.max (10): 25.22Gi of memory requests
    and 44.40 cores of limits; `up` would have waited for pods the quota refuses."""
    with pytest.raises(ConfigError) as refused:
        parse_settings(merge(stack_settings("prod"), merge(baseline("prod", "max"), OLD_PROD_QUOTA)))
    message = str(refused.value)
    assert "the baseline's 10 pods" in message, message
    assert "requests.memory 25.22Gi > quota.requestsMemory 24.00Gi" in message, message
    assert "limits.cpu 44.40 cores > quota.limitsCpu 40.00 cores" in message, message


def test_a_baseline_of_replicas_min_fits_the_former_quota_too() -> None:
    settings = parse_settings(merge(stack_settings("prod"), merge(baseline("prod", "min"), OLD_PROD_QUOTA)))
    assert settings.rollout.baseline_replicas == 3


def test_a_stack_too_big_without_any_baseline_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"pods 34 > quota.pods 20"):
        parse_settings(merge(stack_settings("prod"), {"quota": {"pods": 20}}))
