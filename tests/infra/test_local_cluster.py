"""immune_infra.local_cluster: the overrides that fit staging and prod to the local cluster, rendered
with the real program: only images built here, no DNS, no volumes, one node, both stacks within 2 cores."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from immune_infra.config import parse_settings
from immune_infra.local_cluster import (
    IMAGES,
    LOCAL_SCRAPE_INTERVAL,
    LocalClusterError,
    built_images,
    main,
    overrides,
    read_versions,
)
from immune_infra.policies import pod_spec, violations
from immune_infra.render import REPOSITORY_ROOT, RenderedStack

from tests.infra.crd_schema import errors as crd_errors
from tests.infra.scan_support import KUBERNETES_VERSION
from tests.infra.support import render

REGISTRY = "127.0.0.1:15000"
NAMES = [*IMAGES.values(), "python"]
# The node's 2 cores, less what the control plane, the router and the images daemon need.
NODE_CPU_BUDGET_M = 1500


def _built(root: Path, names: list[str] = NAMES) -> Path:
    built = root / "built"
    built.mkdir(parents=True)
    for name in names:
        (built / name).write_text(f"{REGISTRY}/immune/{name}:1.0-test\n1.0\n")
    return built


def _local(stack: str, tmp_path: Path) -> RenderedStack:
    built = built_images(_built(tmp_path / stack))
    # The repository root holds app/Dockerfile as `scripts/images.sh context` does.
    return render(stack, overrides(stack, built, read_versions(), REPOSITORY_ROOT))


def _cpu_m(value: str) -> int:
    return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)


def _requested_cpu_m(rendered: RenderedStack) -> int:
    """CPU requested with every Deployment at its HPA floor, every StatefulSet full, Jobs running."""
    floors = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["minReplicas"]
        for hpa in rendered.of_kind("HorizontalPodAutoscaler")
    }
    total = 0
    for manifest in rendered.manifests:
        spec = pod_spec(manifest)
        if spec is None:
            continue
        name = manifest["metadata"]["name"]
        replicas = floors.get(name, manifest["spec"].get("replicas", 1))
        per_pod = sum(_cpu_m(c["resources"]["requests"]["cpu"]) for c in spec["containers"])
        total += replicas * per_pod
    return total


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_local_stack_uses_only_images_built_here_and_passes_the_checks(stack: str, tmp_path: Path) -> None:
    rendered = _local(stack, tmp_path)
    images = {
        container["image"]
        for manifest in rendered.manifests
        if (spec := pod_spec(manifest)) is not None
        for group in ("initContainers", "containers")
        for container in spec.get(group) or []
    }
    app = f"{REGISTRY}/pulumi/immune-core@sha256:" + "0" * 64  # built and pushed by the program
    assert app in images
    assert all(image.startswith(f"{REGISTRY}/immune/") for image in images - {app}), images
    assert rendered.exports["imageBuilder"] == "engine-api"
    assert not [m for m in rendered.manifests if "grafana" in m["metadata"]["name"]]
    assert not [
        m
        for m in rendered.manifests
        if m["kind"] == "PersistentVolumeClaim" or m.get("spec", {}).get("volumeClaimTemplates")
    ]
    assert "svc.cluster.local" not in str(rendered.find("Secret", "postgres-auth"))
    # Scrapes every 5 s: a 40 s canary step's metric checks wait for one after the step's end.
    scrapes = yaml.safe_load(rendered.find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert scrapes["global"]["scrape_interval"] == LOCAL_SCRAPE_INTERVAL == "5s"
    # The router (a host process) on its bridge address: CNI_BRIDGE_IP:ROUTER_METRICS_PORT.
    router = next(job for job in scrapes["scrape_configs"] if job["job_name"] == "router")
    assert router["static_configs"] == [{"targets": ["10.244.0.1:18483"]}]
    assert rendered.exports["routerScrapeJob"] == "router"
    assert rendered.of_kind("HTTPRoute") and rendered.of_kind("CustomResourceDefinition")
    for manifest in rendered.manifests:
        if manifest["kind"] in ("HTTPRoute", "Middleware"):
            assert crd_errors(manifest) == [], manifest["metadata"]["name"]
        else:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        assert violations(manifest) == []


def test_prod_brokers_may_share_the_one_node(tmp_path: Path) -> None:
    kafka = _local("prod", tmp_path).find("StatefulSet", "kafka")
    assert kafka["spec"]["replicas"] == 3
    anti = kafka["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"]
    # The default prod stack still requires separate nodes.
    default = render("prod").find("StatefulSet", "kafka")["spec"]["template"]["spec"]["affinity"]
    assert default["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


def test_both_stacks_fit_the_node(tmp_path: Path) -> None:
    staging, prod = _requested_cpu_m(_local("staging", tmp_path)), _requested_cpu_m(_local("prod", tmp_path))
    print(f"\n[local-cluster] CPU requested at the HPA floors: staging {staging}m, prod {prod}m")
    assert staging + prod <= NODE_CPU_BUDGET_M
    # The stack files as they are would not: that is why the footprint is overridden.
    assert _requested_cpu_m(render("staging")) + _requested_cpu_m(render("prod")) > 2000


def test_missing_images_are_named_with_the_command_that_builds_them(tmp_path: Path) -> None:
    built = built_images(_built(tmp_path, [name for name in NAMES if name not in ("redis", "python")]))
    with pytest.raises(
        LocalClusterError, match=r"images not built: python, redis \(scripts/images.sh build python redis\)"
    ):
        overrides("staging", built, read_versions(), tmp_path)
    with pytest.raises(LocalClusterError, match=r"run scripts/images\.sh build"):
        built_images(tmp_path / "nothing")


def test_cli_writes_the_settings_into_a_stack_file_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _built(tmp_path)
    stack_file = tmp_path / "Pulumi.staging.yaml"
    original = yaml.safe_load((REPOSITORY_ROOT / "Pulumi.staging.yaml").read_text())
    original["config"]["active-immune-core:postgresPassword"] = {"secure": "v1:abc"}
    stack_file.write_text(yaml.safe_dump(original))
    argv = ["--stack", "staging", "--built", str(built), "--context", str(REPOSITORY_ROOT)]
    assert main([*argv, "--write", str(stack_file)]) == 0
    written = yaml.safe_load(stack_file.read_text())["config"]
    settings = written["active-immune-core:settings"]
    assert written["active-immune-core:postgresPassword"] == {"secure": "v1:abc"}  # secrets kept
    assert settings["cluster"] == {"dns": False, "persistentVolumes": False, "singleNode": True}
    assert settings["kafka"]["image"] == f"{REGISTRY}/immune/kafka:1.0-test"
    assert settings["kafka"]["brokers"] == 1 and settings["namespace"] == "immune-staging"  # the rest stays
    assert settings["imageBuild"]["dockerHost"] == f"unix://{read_versions()['IMAGES_DOCKER_SOCKET']}"
    parse_settings(settings)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["imageBuild"]["buildArgs"]["BASE"] == (
        f"{REGISTRY}/immune/python:1.0-test"
    )
    with pytest.raises(SystemExit) as exited:
        main(["--stack", "staging", "--built", str(tmp_path / "none"), "--context", "/srv/ctx"])
    assert exited.value.code == 1
