"""How a pipeline stack config (stacks/<name>.yaml) becomes Kubernetes target options (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from immune_infra.immune_app import COLOR_LABEL
from immune_infra.immune_app import SERVED_BY_HEADER as INFRA_SERVED_BY_HEADER

from immune_suite.gates.attribution import SERVED_BY_HEADER
from immune_suite.paths import REPO_ROOT
from immune_suite.stack_config import load_stack
from immune_suite.targets.base import Color, Release, Target, TargetError
from immune_suite.targets.factory import make_target
from immune_suite.targets.kubernetes import KubernetesTarget, KubernetesTargetOptions
from tests.suite.targets.kubernetes.support import ApiServer, kubeconfig


def test_factory_builds_a_kubernetes_target_for_the_staging_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMMUNE_PULUMI_RENDER_DIR", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///srv/pulumi-state")
    target = make_target(load_stack("staging"))
    assert isinstance(target, KubernetesTarget) and isinstance(target, Target)
    assert target.options.stack == "staging"
    assert target.options.project_dir == REPO_ROOT
    assert target.options.backend_url == "file:///srv/pulumi-state"
    assert target.options.render_dir is None


def test_render_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMMUNE_PULUMI_RENDER_DIR", str(tmp_path))
    target = make_target(load_stack("prod"))
    assert isinstance(target, KubernetesTarget)
    assert target.options.render_dir == tmp_path / "prod"


def test_only_the_program_stacks_are_accepted() -> None:
    with pytest.raises(TargetError, match="unknown Kubernetes stack"):
        KubernetesTarget(KubernetesTargetOptions(stack="local"))


def deployed(
    monkeypatch: pytest.MonkeyPatch,
    outputs: dict[str, str],
    kubeconfig: str = "",
    router_port: int | None = None,
) -> KubernetesTarget:
    """A staging target whose stack outputs are `outputs` (no engine) and whose kubeconfig is `kubeconfig`."""
    options = KubernetesTargetOptions(
        stack="staging", engine_env={}, extra_env={"KUBECONFIG": kubeconfig}, router_port=router_port
    )
    target = KubernetesTarget(options)
    monkeypatch.setattr(target, "outputs", lambda: outputs)
    return target


def test_metric_selectors_name_the_colours_series_in_the_stacks_prometheus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = deployed(monkeypatch, {"namespace": "immune-staging"})
    selectors = target.metric_selectors(Color.GREEN, Release("2.0.0", "abc", "x"))
    # The labels the bundled Prometheus's app job gives each target (immune_infra.monitoring).
    assert selectors.app == 'job="immune-core",namespace="immune-staging",color="green"'
    assert selectors.targets == (selectors.app,) and selectors.router is None
    with pytest.raises(TargetError, match="exports no namespace"):
        deployed(monkeypatch, {}).metric_selectors(Color.GREEN, Release("2.0.0", "abc", "x"))


def test_metrics_url_is_the_bundled_prometheus_service_or_the_operators(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = ApiServer()
    try:
        config = kubeconfig(tmp_path / "kubeconfig", server.url)
        server.answer(
            "/api/v1/namespaces/immune-staging/services/prometheus",
            {"kind": "Service", "spec": {"clusterIP": "10.96.0.84", "ports": [{"port": 9090}]}},
        )
        bundled = {"namespace": "immune-staging", "monitoringMode": "bundled"}
        assert deployed(monkeypatch, bundled, config).metrics_url() == "http://10.96.0.84:9090"
        # Bad case: the Service is gone (404): the target cannot say where its metrics are.
        with pytest.raises(TargetError, match="HTTP 404"):
            deployed(monkeypatch, {**bundled, "namespace": "elsewhere"}, config).metrics_url()
    finally:
        server.close()
    operator = {"namespace": "immune-prod", "monitoringMode": "operator", "prometheusUrl": "http://prom:9090"}
    assert deployed(monkeypatch, operator).metrics_url() == "http://prom:9090"
    with pytest.raises(TargetError, match="no prometheusUrl"):
        deployed(monkeypatch, {**operator, "prometheusUrl": ""}).metrics_url()


def test_through_the_router_the_baseline_is_reached_at_its_cluster_ip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outputs = {
        "namespace": "immune-staging",
        "canaryUrl": "http://immune.staging.example/api/v1",
        "stableUrl": "http://immune.staging.example/api/v1",
        "previewUrl": "http://preview.immune.staging.example/api/v1",
        "baselineUrl": "http://immune-core-baseline.immune-staging.svc.cluster.local/api/v1",
    }
    server = ApiServer()
    try:
        config = kubeconfig(tmp_path / "kubeconfig", server.url)
        target = deployed(monkeypatch, outputs, config, router_port=18480)
        # Bad case first: no baseline Service (none started): no baseline URL, not a DNS name that
        # this machine cannot resolve.
        assert target.endpoints().baseline_url is None
        server.answer(
            "/api/v1/namespaces/immune-staging/services/immune-core-baseline",
            {"kind": "Service", "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}},
        )
        endpoints = target.endpoints()
    finally:
        server.close()
    assert endpoints.baseline_url == "http://10.96.0.50:80/api/v1"
    assert endpoints.stable_url == "http://immune.staging.example:18480/api/v1"


def test_gateway_attribution_is_the_routers_header_and_the_live_selectors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert SERVED_BY_HEADER == INFRA_SERVED_BY_HEADER  # what the program's route filters set
    server = ApiServer()
    try:
        config = kubeconfig(tmp_path / "kubeconfig", server.url)
        services = "/api/v1/namespaces/immune-staging/services"
        for name, colour in (("immune-core", "green"), ("immune-core-preview", "blue")):
            server.answer(
                f"{services}/{name}",
                {"kind": "Service", "spec": {"selector": {"app": "immune-core", COLOR_LABEL: colour}}},
            )
        gateway = {"namespace": "immune-staging", "routingMode": "gateway"}
        attribution = deployed(monkeypatch, gateway, config).attribution()
        assert attribution is not None and attribution.header == SERVED_BY_HEADER
        # The router's value names the Service; the Service's live selector names the colour.
        assert attribution.color_of({SERVED_BY_HEADER: "immune-core"}) == "green"
        assert attribution.color_of({SERVED_BY_HEADER: "immune-core-preview"}) == "blue"
        assert attribution.color_of({SERVED_BY_HEADER: "immune-core-baseline"}) == "baseline"
        # A response the router did not name (or named something else) is unattributed, never a colour.
        assert attribution.color_of({}) == attribution.color_of({SERVED_BY_HEADER: "x"}) == "unattributed"
        # Bad case: a stable Service that selects no colour is an error, not a guess.
        server.answer(f"{services}/immune-core", {"kind": "Service", "spec": {"selector": {"app": "x"}}})
        with pytest.raises(TargetError, match="selects no colour"):
            deployed(monkeypatch, gateway, config).attribution()
    finally:
        server.close()
    # ingress-nginx names no upstream: no attribution (samples take the colour the service reports).
    assert (
        deployed(monkeypatch, {"namespace": "immune-staging", "routingMode": "nginx"}).attribution() is None
    )


def test_a_baseline_with_its_own_host_is_reached_through_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {
        "namespace": "immune-staging",
        "canaryUrl": "http://immune.staging.example/api/v1",
        "stableUrl": "http://immune.staging.example/api/v1",
        "previewUrl": "http://preview.immune.staging.example/api/v1",
        "baselineUrl": "http://baseline.immune.staging.example/api/v1",
        "baselineHost": "baseline.immune.staging.example",
    }
    # No API server needed: the router's port on the baseline's own host, like the other routes.
    endpoints = deployed(monkeypatch, outputs, router_port=18480).endpoints()
    assert endpoints.baseline_url == "http://baseline.immune.staging.example:18480/api/v1"
