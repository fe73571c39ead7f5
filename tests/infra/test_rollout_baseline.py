"""Kayenta's fresh baseline on Kubernetes: `rollout.baseline: {image, replicas}`.

Every test renders the real program under Pulumi's mocks and diffs whole stacks, so "only the baseline
appears" is checked against every object the program declares.
"""

from __future__ import annotations

from typing import Any

import pytest
from immune_infra.config import ConfigError, parse_settings
from immune_infra.render import RenderedStack, stack_settings

from tests.infra.support import assert_fits_the_quota, render, rollout, stack_diff

STABLE_IMAGE = "ghcr.io/active-immune-core/immune-core@sha256:" + "ab" * 32
CANDIDATE_IMAGE = "ghcr.io/active-immune-core/immune-core@sha256:" + "cd" * 32
COLOR_LABEL = "immune.vertice.dev/color"


def with_baseline(
    base: dict[str, Any] | None = None, replicas: int = 2, image: str = STABLE_IMAGE
) -> dict[str, Any]:
    overrides: dict[str, Any] = {"rollout": {}} if base is None else base
    overrides["rollout"] = {**overrides["rollout"], "baseline": {"image": image, "replicas": replicas}}
    return overrides


def routed(weight: int, **routing: Any) -> dict[str, Any]:
    return rollout("blue", weight, mode="gateway", **routing)


def candidate(overrides: dict[str, Any]) -> dict[str, Any]:
    """Green runs the candidate, so the baseline's (stable) image differs from one colour's."""
    overrides["rollout"] = {**overrides["rollout"], "images": {"green": CANDIDATE_IMAGE}}
    return overrides


def pod_spec(rendered: RenderedStack, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.find("Deployment", name)["spec"]["template"]["spec"]
    return spec


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_baseline_adds_only_its_deployment_and_service(stack: str) -> None:
    base = render(stack, candidate(rollout("blue", 10)))
    with_one = render(stack, with_baseline(candidate(rollout("blue", 10)), replicas=2))
    # nginx mode: one canary backend only, so no route changes (the pipeline loads the baseline
    # through its own Service); nothing of the colours, their HPAs, PDBs or Services moves.
    assert stack_diff(base, with_one) == {
        ("Deployment", "immune-core-baseline"): ["<added>"],
        ("Service", "immune-core-baseline"): ["<added>"],
    }
    deployment = with_one.find("Deployment", "immune-core-baseline")
    assert deployment["spec"]["replicas"] == 2
    assert pod_spec(with_one, "immune-core-baseline")["containers"][0]["image"] == STABLE_IMAGE
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[COLOR_LABEL] == "baseline"
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    service = with_one.find("Service", "immune-core-baseline")
    assert selects(service["spec"]["selector"], labels)
    assert with_one.exports["baselineReplicas"] == 2
    namespace = parse_settings(stack_settings(stack)).namespace
    assert with_one.exports["baselineUrl"] == f"http://immune-core-baseline.{namespace}.svc.cluster.local"
    assert base.exports["baselineUrl"] is None
    assert with_one.exports["baselineWeight"] == 0


@pytest.mark.parametrize("replicas", [None, 0])
def test_no_baseline_when_absent_or_zero(replicas: int | None) -> None:
    base = render("staging", rollout("blue", 10))
    overrides = rollout("blue", 10) if replicas is None else with_baseline(rollout("blue", 10), replicas=0)
    rendered = render("staging", overrides)
    assert stack_diff(base, rendered) == {}
    assert not [m for m in rendered.manifests if "baseline" in m["metadata"]["name"]]
    assert rendered.exports["baselineReplicas"] == 0


def test_baseline_pods_are_the_colours_pods_but_for_labels_image_and_colour() -> None:
    rendered = render("prod", with_baseline(candidate(rollout("blue", 10))))
    baseline = pod_spec(rendered, "immune-core-baseline")
    blue = pod_spec(rendered, "immune-core-blue")
    assert baseline["containers"][0]["image"] == STABLE_IMAGE
    # Same security context, probes, resources, volumes, env (only the colour name differs).
    for key in ("securityContext", "volumes", "serviceAccountName", "automountServiceAccountToken"):
        assert baseline[key] == blue[key], key
    strip = ("image", "env")
    assert {k: v for k, v in baseline["containers"][0].items() if k not in strip} == {
        k: v for k, v in blue["containers"][0].items() if k not in strip
    }
    baseline_env = {e["name"]: e for e in baseline["containers"][0]["env"]}
    blue_env = {e["name"]: e for e in blue["containers"][0]["env"]}
    assert baseline_env.pop("IMMUNE_DEPLOYMENT_COLOR")["value"] == "baseline"
    blue_env.pop("IMMUNE_DEPLOYMENT_COLOR")
    # Same Kafka group (one more member, never a second group that would process every event again).
    assert baseline_env == blue_env


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_stable_preview_pdb_and_hpa_never_select_the_baseline(stack: str) -> None:
    rendered = render(stack, with_baseline(rollout("green", 30)))
    labels = rendered.find("Deployment", "immune-core-baseline")["spec"]["template"]["metadata"]["labels"]
    for name in ("immune-core", "immune-core-preview", "immune-core-blue-pods", "immune-core-green-pods"):
        assert not selects(rendered.find("Service", name)["spec"]["selector"], labels), name
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        assert not selects(pdb["spec"]["selector"]["matchLabels"], labels)
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in rendered.of_kind("HorizontalPodAutoscaler")}
    assert "immune-core-baseline" not in targets
    # Its NetworkPolicy is the service's: the app's egress (Postgres, Redis, Kafka) selects it too.
    app_policies = [
        policy
        for policy in rendered.of_kind("NetworkPolicy")
        if policy["spec"]["podSelector"].get("matchLabels")
        and selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    ]
    assert [p["metadata"]["name"] for p in app_policies] == ["allow-immune-core"]


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (10, [("immune-core", 80), ("immune-core-preview", 10), ("immune-core-baseline", 10)]),
        (50, [("immune-core", 0), ("immune-core-preview", 50), ("immune-core-baseline", 50)]),
        (70, [("immune-core", 0), ("immune-core-preview", 70), ("immune-core-baseline", 30)]),
        (100, [("immune-core", 0), ("immune-core-preview", 100)]),
    ],
)
def test_gateway_weights_give_the_baseline_the_canarys_share_out_of_stables(
    weight: int, expected: list[tuple[str, int]]
) -> None:
    rendered = render("staging", with_baseline(routed(weight)))
    route = rendered.find("HTTPRoute", "immune-core")
    backends = [(ref["name"], ref["weight"]) for ref in route["spec"]["rules"][-1]["backendRefs"]]
    assert backends == expected
    assert sum(share for _, share in backends) == 100
    assert rendered.exports["baselineWeight"] == dict(expected).get("immune-core-baseline", 0)


def test_gateway_without_canary_routes_nothing_to_the_baseline() -> None:
    rendered = render("staging", with_baseline(routed(0)))
    route = rendered.find("HTTPRoute", "immune-core")
    assert route["spec"]["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                {"name": "immune-core", "port": 80, "weight": 100, "filters": [served_by("immune-core")]}
            ],
        }
    ]


def test_gateway_baseline_changes_only_the_route_weights_and_adds_its_objects() -> None:
    base = render("staging", routed(20))
    paired = render("staging", with_baseline(routed(20)))
    changes = stack_diff(base, paired)
    assert changes.pop(("Deployment", "immune-core-baseline")) == ["<added>"]
    assert changes.pop(("Service", "immune-core-baseline")) == ["<added>"]
    # Its own host through the router (routing.baselineHost), for the 100 % step's comparison load.
    assert changes.pop(("HTTPRoute", "immune-core-baseline")) == ["<added>"]
    # One more backendRef (the list grows) and stable's weight drops: the rule is the only change.
    assert list(changes) == [("HTTPRoute", "immune-core")]


def served_by(service: str) -> dict[str, Any]:
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"set": [{"name": "X-Immune-Served-By", "value": service}]},
    }


def test_every_gateway_backend_names_itself_in_the_routers_served_by_header() -> None:
    """The router, not the pod, says which Service answered (issue 14 item 2): every backendRef of the
    stable, preview and baseline routes sets X-Immune-Served-By to its Service's name."""
    rendered = render("staging", with_baseline(routed(20)))
    names = {"immune-core": "stable", "immune-core-preview": "preview", "immune-core-baseline": "baseline"}
    seen = set()
    for route in names:
        for rule in rendered.find("HTTPRoute", route)["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                assert ref["filters"] == [served_by(ref["name"])], ref
                seen.add(ref["name"])
    assert seen == set(names)
    baseline = rendered.find("HTTPRoute", "immune-core-baseline")["spec"]
    assert baseline["hostnames"] == ["baseline.immune.staging.example.com"]
    assert rendered.exports["baselineUrl"] == "http://baseline.immune.staging.example.com"
    assert rendered.exports["baselineHost"] == "baseline.immune.staging.example.com"


def test_without_a_baseline_host_the_baseline_is_its_service() -> None:
    rendered = render("staging", with_baseline(routed(20, baselineHost=None)))
    assert not [
        m
        for m in rendered.manifests
        if m["metadata"]["name"] == "immune-core-baseline" and m["kind"] == "HTTPRoute"
    ]
    assert rendered.exports["baselineUrl"].startswith("http://immune-core-baseline.")


def _settings_with(baseline: dict[str, Any]) -> dict[str, Any]:
    settings = stack_settings("staging")
    settings["rollout"] = {**settings["rollout"], "baseline": baseline}
    return settings


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ({"image": "ghcr.io/active-immune-core/immune-core:latest", "replicas": 1}, "never latest"),
        ({"image": "build", "replicas": 1}, "must be pinned"),
        ({"image": STABLE_IMAGE, "replicas": -1}, "greater than or equal to 0"),
        ({"image": STABLE_IMAGE, "replicas": 99}, r"rollout\.baseline\.replicas \(99\) exceeds"),
        ({"replicas": 1}, "image"),
        ({"image": STABLE_IMAGE, "replicas": 1, "colour": "x"}, "colour"),
    ],
)
def test_bad_baseline_config_is_refused(baseline: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(_settings_with(baseline))


def test_good_baseline_config_parses() -> None:
    settings = parse_settings(_settings_with({"image": STABLE_IMAGE, "replicas": "1"}))
    assert settings.rollout.baseline is not None
    assert settings.rollout.baseline_replicas == 1


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_worst_case_footprint_with_the_pipelines_baseline_assert_fits_the_quota(stack: str) -> None:
    """Both colours at HPA max plus surge and a baseline at the count the pipeline gives it by default
    (the active colour's, i.e. `app.replicas.min`): still within the quota."""
    floor = parse_settings(stack_settings(stack)).app.replicas.min
    assert_fits_the_quota(render(stack, with_baseline(rollout("blue", 50), replicas=floor)))
