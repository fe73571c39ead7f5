"""Per-colour rollout config: `rollout.replicas.<colour>` and `rollout.env.<colour>`.

Every test diffs the whole stack between two renders, so "only that colour changes" is checked
against every object the program declares.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from immune_infra.config import OVERRIDABLE_ENV, ConfigError, parse_settings
from immune_infra.render import RenderedStack, merge, render_stack, stack_settings

from tests.infra.support import render, stack_diff

FAULT = {"IMMUNE_FAULT_LATENCY_MS": "300", "IMMUNE_FAULT_ERROR_RATIO": "0.2"}
PATCH_FORCE = "pulumi.com/patchForce"


def colour_rollout(
    replicas: dict[str, Any] | None = None, env: dict[str, Any] | None = None
) -> dict[str, Any]:
    rollout: dict[str, Any] = {}
    if replicas is not None:
        rollout["replicas"] = replicas
    if env is not None:
        rollout["env"] = env
    return {"rollout": rollout}


def container_env(rendered: RenderedStack, color: str) -> list[dict[str, Any]]:
    deployment = rendered.find("Deployment", f"immune-core-{color}")
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def hpa_names(rendered: RenderedStack) -> set[str]:
    return {m["metadata"]["name"] for m in rendered.of_kind("HorizontalPodAutoscaler")}


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("color", ["blue", "green"])
def test_zero_replicas_scales_the_colour_away_and_drops_its_autoscaler(stack: str, color: str) -> None:
    base = render(stack)
    scaled = render(stack, colour_rollout(replicas={color: 0}))
    assert stack_diff(base, scaled) == {
        ("Deployment", f"immune-core-{color}"): [".spec.replicas"],
        # No HPA at all: nothing can scale a retired colour back up behind the pipeline's back.
        ("HorizontalPodAutoscaler", f"immune-core-{color}"): ["<removed>"],
    }
    assert scaled.find("Deployment", f"immune-core-{color}")["spec"]["replicas"] == 0
    other = "green" if color == "blue" else "blue"
    assert hpa_names(scaled) == {f"immune-core-{other}"}
    assert "replicas" not in scaled.find("Deployment", f"immune-core-{other}")["spec"]
    # Selectors and pod labels keep the colour, whatever the count.
    deployment = scaled.find("Deployment", f"immune-core-{color}")
    assert (
        deployment["spec"]["selector"] == base.find("Deployment", f"immune-core-{color}")["spec"]["selector"]
    )


def test_both_colours_can_be_scaled_away() -> None:
    scaled = render("staging", colour_rollout(replicas={"blue": 0, "green": 0}))
    assert hpa_names(scaled) == set()
    assert [scaled.find("Deployment", f"immune-core-{c}")["spec"]["replicas"] for c in ("blue", "green")] == [
        0,
        0,
    ]


def test_a_positive_count_sets_that_colours_autoscaler_floor_only() -> None:
    base = render("prod")
    pinned = render("prod", colour_rollout(replicas={"green": 5}))
    assert stack_diff(base, pinned) == {
        ("HorizontalPodAutoscaler", "immune-core-green"): [".spec.minReplicas"]
    }
    hpa = pinned.find("HorizontalPodAutoscaler", "immune-core-green")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (5, 10)
    # The HPA keeps owning the count: the Deployment does not declare one.
    assert "replicas" not in pinned.find("Deployment", "immune-core-green")["spec"]


def test_explicit_null_is_the_app_default() -> None:
    # `merge` drops None overrides, so build the raw settings with explicit nulls by hand.
    raw = copy.deepcopy(stack_settings("prod"))
    raw["rollout"]["replicas"] = {"blue": None, "green": 2}
    settings = parse_settings(raw)
    assert (settings.replicas_for("blue"), settings.replicas_for("green")) == (None, 2)
    explicit = render_stack("prod", raw_settings=raw)
    assert stack_diff(render("prod", colour_rollout(replicas={"green": 2})), explicit) == {}


def test_app_deployments_force_the_fields_they_declare() -> None:
    # Server-side apply: `replicas: 0` must win over the HPA controller, which last wrote the field.
    for stack in ("staging", "prod"):
        for color in ("blue", "green"):
            deployment = render(stack).find("Deployment", f"immune-core-{color}")
            assert deployment["metadata"]["annotations"] == {PATCH_FORCE: "true"}


@pytest.mark.parametrize("color", ["blue", "green"])
def test_env_overrides_land_only_on_that_colours_deployment(color: str) -> None:
    base = render("staging")
    faulty = render("staging", colour_rollout(env={color: FAULT}))
    changes = stack_diff(base, faulty)
    assert set(changes) == {("Deployment", f"immune-core-{color}")}
    assert all(
        path.startswith(".spec.template.spec.containers[0].env") for path in changes[set(changes).pop()]
    )
    env = container_env(faulty, color)
    names = [item["name"] for item in env]
    assert names == [item["name"] for item in container_env(base, color)] + sorted(FAULT)
    assert {item["name"]: item.get("value") for item in env if item["name"] in FAULT} == FAULT
    # Migration Jobs are immutable and never serve traffic: they keep the plain app env.
    for job in faulty.of_kind("Job"):
        job_env = job["spec"]["template"]["spec"]["containers"][0].get("env", [])
        assert not {item["name"] for item in job_env} & set(FAULT)


def test_an_override_of_a_variable_the_program_sets_replaces_it_in_place() -> None:
    base = render("prod")
    debug = render(
        "prod", colour_rollout(env={"green": {"IMMUNE_LOG_LEVEL": "DEBUG", "IMMUNE_VERSION": "0.2.0-rc1"}})
    )
    before, after = container_env(base, "green"), container_env(debug, "green")
    assert [item["name"] for item in after].count("IMMUNE_LOG_LEVEL") == 1
    index = [item["name"] for item in before].index("IMMUNE_LOG_LEVEL")
    assert (before[index]["value"], after[index]["value"]) == ("INFO", "DEBUG")
    assert after[len(before) :] == [{"name": "IMMUNE_VERSION", "value": "0.2.0-rc1"}]
    assert container_env(debug, "blue") == container_env(base, "blue")


def test_numbers_stored_by_the_cli_are_taken_as_text() -> None:
    # `pulumi config set --path ...env.green.IMMUNE_FAULT_LATENCY_MS 300` may store a number.
    rendered = render(
        "staging", colour_rollout(env={"green": {"IMMUNE_FAULT_LATENCY_MS": 300, "IMMUNE_VERSION": 2}})
    )
    env = {item["name"]: item.get("value") for item in container_env(rendered, "green")}
    assert (env["IMMUNE_FAULT_LATENCY_MS"], env["IMMUNE_VERSION"]) == ("300", "2")


def _error_for(overrides: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(merge(stack_settings("staging"), overrides))
    return str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            colour_rollout(env={"green": {"IMMUNE_DATABASE_URL": "postgresql://x"}}),
            [
                "settings.rollout.env.green",
                "IMMUNE_DATABASE_URL cannot be overridden per colour",
                "allowed: " + ", ".join(sorted(OVERRIDABLE_ENV)),
            ],
        ),
        (
            colour_rollout(env={"blue": {"IMMUNE_API_TOKENS": "t"}}),
            ["IMMUNE_API_TOKENS cannot be overridden"],
        ),
        (colour_rollout(env={"blue": {"PATH": "/tmp"}}), ["PATH cannot be overridden"]),
        (colour_rollout(env={"purple": {}}), ["settings.rollout.env.purple: unknown key"]),
        (colour_rollout(env={"green": {"IMMUNE_FAULT_ERROR_RATIO": "1.5"}}), ["between 0 and 1"]),
        (colour_rollout(env={"green": {"IMMUNE_FAULT_LATENCY_MS": "-1"}}), ["between 0 and 60000"]),
        (colour_rollout(env={"green": {"IMMUNE_FAULT_LATENCY_MS": "slow"}}), ["'slow' is not a number"]),
        (colour_rollout(env={"green": {"IMMUNE_LOG_LEVEL": "chatty"}}), ["'chatty' is not a log level"]),
        (colour_rollout(env={"green": {"IMMUNE_VERSION": "1.0 beta"}}), ["not a version string"]),
        (
            colour_rollout(env={"green": {"IMMUNE_LOG_LEVEL": True}}),
            ["IMMUNE_LOG_LEVEL: 'true' is not a log level"],
        ),
        (
            colour_rollout(replicas={"green": -1}),
            ["settings.rollout.replicas.green", "greater than or equal to 0"],
        ),
        (colour_rollout(replicas={"green": "many"}), ["settings.rollout.replicas.green", "'many'"]),
        (colour_rollout(replicas={"blue": 4}), ["rollout.replicas.blue (4) exceeds app.replicas.max (3)"]),
        (colour_rollout(replicas={"red": 1}), ["settings.rollout.replicas.red: unknown key"]),
    ],
)
def test_bad_per_colour_config_is_refused_readably(overrides: dict[str, Any], fragments: list[str]) -> None:
    message = _error_for(overrides)
    for fragment in fragments:
        assert fragment in message


def test_every_problem_of_a_colour_is_reported_at_once() -> None:
    message = _error_for(
        colour_rollout(env={"green": {"IMMUNE_REDIS_URL": "redis://x", "IMMUNE_FAULT_ERROR_RATIO": "2"}})
    )
    assert "IMMUNE_REDIS_URL cannot be overridden" in message
    assert "IMMUNE_FAULT_ERROR_RATIO: '2' must be a ratio" in message
