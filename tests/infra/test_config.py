"""The settings model: the real stack files parse; unknown keys and wrong types are refused readably."""

from __future__ import annotations

from typing import Any

import pytest
from immune_infra.config import ConfigError, image_is_pinned, parse_settings
from immune_infra.render import merge, render_stack, stack_settings


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_real_stack_files_parse_and_are_frozen(stack: str) -> None:
    settings = parse_settings(stack_settings(stack))
    assert settings.environment == stack
    with pytest.raises(Exception, match="frozen"):
        settings.rollout.canary_weight = 50


def test_prod_and_staging_differ_where_durability_matters() -> None:
    staging, prod = (parse_settings(stack_settings(stack)) for stack in ("staging", "prod"))
    assert (staging.kafka.brokers, staging.kafka.replication_factor, staging.kafka.min_insync_replicas) == (
        1,
        1,
        1,
    )
    assert (prod.kafka.brokers, prod.kafka.replication_factor, prod.kafka.min_insync_replicas) == (3, 3, 2)
    assert prod.app.replicas.min > staging.app.replicas.min


def _error_for(overrides: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(merge(stack_settings("staging"), overrides))
    return str(caught.value)


def test_unknown_key_is_named_with_its_path() -> None:
    message = _error_for({"kafka": {"brokerz": 3}})
    assert "settings.kafka.brokerz: unknown key" in message


def test_wrong_type_is_named_with_its_value() -> None:
    message = _error_for({"rollout": {"canaryWeight": "lots"}})
    assert "settings.rollout.canaryWeight" in message
    assert "'lots'" in message


def test_numeric_strings_from_the_cli_are_accepted() -> None:
    # `pulumi config set --path settings.rollout.canaryWeight 10` may store the number as a string.
    settings = parse_settings(merge(stack_settings("staging"), {"rollout": {"canaryWeight": "10"}}))
    assert settings.rollout.canary_weight == 10


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"rollout": {"canaryWeight": 101}}, "less than or equal to 100"),
        ({"rollout": {"activeColor": "purple"}}, "settings.rollout.activeColor"),
        ({"rollout": {"images": {"blue": "ghcr.io/x/immune-core:latest"}}}, "never latest"),
        ({"rollout": {"images": {"green": "ghcr.io/x/immune-core"}}}, "must be pinned"),
        ({"kafka": {"replicationFactor": 3}}, "cannot exceed brokers"),
        ({"kafka": {"minInsyncReplicas": 2}}, "cannot exceed replicationFactor"),
        ({"kafka": {"brokers": 2, "replicationFactor": 2}}, "must be odd"),
        ({"kafka": {"image": "apache/kafka"}}, "must be pinned"),
        ({"namespace": "Immune_Staging"}, "not a valid namespace"),
        ({"routing": {"mode": "istio"}}, "settings.routing.mode"),
        ({"app": {"replicas": {"min": 5, "max": 2}}}, "must be >= min"),
        ({"app": {"resources": {"cpuLimit": "lots"}}}, "not a Kubernetes quantity"),
        ({"redis": {"storage": "ten gigs"}}, "not a Kubernetes quantity"),
        ({"postgres": {"storage": "10 GB"}}, "not a Kubernetes quantity"),
        ({"monitoring": {"grafanaImage": "grafana/grafana"}}, "must be pinned"),
        ({"rollout": {"images": {"blue": "build"}}}, "imageBuild.enabled is false"),
        ({"environment": None}, "settings.environment: Field required"),
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any], fragment: str) -> None:
    assert fragment in _error_for(overrides)


def test_a_non_object_settings_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected an object"):
        parse_settings("[1, 2]")


def test_the_program_itself_refuses_bad_config_before_declaring_anything() -> None:
    bad = merge(stack_settings("prod"), {"monitoring": {"mode": "both"}})
    with pytest.raises(ConfigError) as caught:
        render_stack("prod", raw_settings=bad)
    assert "settings.monitoring.mode" in str(caught.value)


def test_missing_secret_config_is_refused() -> None:
    with pytest.raises(Exception, match="postgresPassword"):
        render_stack("staging", secrets={"redisPassword": "x", "apiTokens": "y", "grafanaAdminPassword": "z"})


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("apache/kafka:4.1.0", True),
        ("ghcr.io/a/b@sha256:" + "a" * 64, True),
        ("localhost:5000/immune-core:1.2.3", True),
        ("localhost:5000/immune-core", False),
        ("redis:latest", False),
        ("redis", False),
        ("ghcr.io/a/b@sha256:abc", False),
    ],
)
def test_image_pinning(image: str, pinned: bool) -> None:
    assert image_is_pinned(image) is pinned
