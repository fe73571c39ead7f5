"""`pulumi up` with `imageBuild.builder: engine-api` on the real engine: the program's dynamic provider
(immune_infra.engine_image, run by pulumi-resource-pulumi-python in the project's venv) builds and pushes
the image against a real Docker daemon and registry (tests/infra/docker_daemon.py), the green colour is
deployed by that digest, a second `up` changes nothing, an edit of the context rebuilds, `destroy` removes
the local image. The Kubernetes side renders to a directory (no cluster needed here)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from pulumi import automation as auto

from tests.infra.docker_daemon import DaemonUnavailable, DockerLab, docker_lab
from tests.support.engine import EngineProject
from tests.support.manifests import load_rendered

pytestmark = [pytest.mark.engine, pytest.mark.slow]

BASE = "imgprov-engine-base:1"
DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app.txt /app/app.txt\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerLab]:
    try:
        with docker_lab(tmp_path_factory.mktemp("docker")) as started:
            base = tmp_path_factory.mktemp("base")
            (base / "Dockerfile").write_text("FROM scratch\nCOPY base.txt /base.txt\n")
            (base / "base.txt").write_text("base\n")
            client = docker.DockerClient(base_url=started.docker_host)
            client.images.build(path=str(base), tag=BASE, rm=True)
            client.close()
            yield started
    except DaemonUnavailable as exc:
        pytest.fail(str(exc))


def _green_image(render_dir: Path) -> str:
    documents = load_rendered(render_dir)
    deployment = next(
        doc
        for key, doc in documents.items()
        if key.startswith("Deployment/") and key.endswith("/immune-core-green")
    )
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_up_builds_pushes_and_deploys_the_digest_then_changes_nothing(
    lab: DockerLab, engine_project: EngineProject, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "app.txt").write_text("one\n")
    render_dir = engine_project.root / "render" / "staging-image"
    target = engine_project.target("staging", render_dir=render_dir)
    repository = f"{lab.registry.address}/immune/immune-core"
    stack = target.stack()
    for key, value in {
        "enabled": "true",
        "builder": "engine-api",
        "repository": repository,
        "tag": "0.1.0",
        "context": str(context),
        "dockerfile": str(context / "Dockerfile"),
        "dockerHost": lab.docker_host,
        "buildArgs.BASE_IMAGE": BASE,
    }.items():
        stack.set_config(f"settings.imageBuild.{key}", auto.ConfigValue(value=value), path=True)
    stack.set_config("settings.rollout.images.green", auto.ConfigValue(value="build"), path=True)

    started = time.monotonic()
    first = target.up()
    seconds = {"up (build, push)": time.monotonic() - started}
    assert first.changes.get("create", 0) > 20
    outputs = target.outputs()
    assert outputs["imageBuilder"] == "engine-api"
    green = outputs["images"]["green"]
    assert re.fullmatch(rf"{re.escape(repository)}@sha256:[0-9a-f]{{64}}", green)
    assert lab.registry.manifest_digest("immune/immune-core", "0.1.0") == green.split("@")[1]
    assert _green_image(render_dir) == green

    started = time.monotonic()
    second = target.up()
    seconds["up (no change)"] = time.monotonic() - started
    assert not second.changed, second.changes

    (context / "app.txt").write_text("two\n")
    started = time.monotonic()
    third = target.up()
    seconds["up (rebuild)"] = time.monotonic() - started
    # Figures for the report (not asserted).
    print("\n[engine-image] " + ", ".join(f"{name} {value:.1f}s" for name, value in seconds.items()))
    assert third.changes.get("update", 0) >= 1, third.changes
    rebuilt = target.outputs()["images"]["green"]
    assert rebuilt != green and _green_image(render_dir) == rebuilt
    assert lab.registry.manifest_digest("immune/immune-core", "0.1.0") == rebuilt.split("@")[1]

    stack.destroy(color="never", suppress_progress=True)
    client = docker.DockerClient(base_url=lab.docker_host)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{repository}:0.1.0")
    client.close()
