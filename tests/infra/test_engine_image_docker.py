"""The engine-API image provider (immune_infra.engine_image) against a real Docker daemon and registry.

The provider's create/diff/update/delete are called exactly as Pulumi's dynamic-provider host calls them,
on a private dockerd and two private registries (tests/infra/docker_daemon.py): a base image built locally,
an app image FROM it through the BASE_IMAGE build argument, pushed; the digest read back from the registry;
no change on the same tree; a new digest after an edit; the local image and (where allowed) the manifest
gone after delete; and the failures (a broken Dockerfile, an unreachable registry or daemon) as clear errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from immune_infra.engine_image import (
    EngineImageError,
    EngineImageProvider,
    build_and_push,
    context_digest,
    delete_image,
)

from tests.infra.docker_daemon import DaemonUnavailable, DockerLab, docker_lab, free_port

pytestmark = pytest.mark.slow

BASE = "imgprov-base:1"
DOCKERFILE = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG GREETING=unset
LABEL dev.vertice.greeting=${GREETING}
COPY app.txt /app/app.txt
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerLab]:
    try:
        with docker_lab(tmp_path_factory.mktemp("docker")) as started:
            client = docker.DockerClient(base_url=started.docker_host)
            base = tmp_path_factory.mktemp("base")
            (base / "Dockerfile").write_text("FROM scratch\nCOPY base.txt /base.txt\n")
            (base / "base.txt").write_text("a base image made here, nothing pulled\n")
            client.images.build(path=str(base), tag=BASE, rm=True)
            client.close()
            yield started
    except DaemonUnavailable as exc:
        pytest.fail(str(exc))


def _context(root: Path, text: str = "version 1\n") -> Path:
    context = root / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "app.txt").write_text(text)
    (context / "notes.local").write_text("ignored by .dockerignore\n")
    (context / ".dockerignore").write_text("*.local\n")
    return context


def _props(lab: DockerLab, context: Path, repository: str, **extra: Any) -> dict[str, Any]:
    args = {"BASE_IMAGE": BASE, "GREETING": "hello"}
    props: dict[str, Any] = {
        "repository": repository,
        "tag": "1.0.0",
        "context": str(context),
        "dockerfile": "Dockerfile",
        "buildArgs": args,
        "platform": None,
        "dockerHost": lab.docker_host,
        "registryServer": None,
        "registryUsername": None,
        "registryPassword": None,
        "registryDelete": True,
        "network": "none",
        "contextDigest": context_digest(context, "Dockerfile", args, None),
    }
    return props | extra


def test_create_diff_update_delete_against_a_real_daemon_and_registry(lab: DockerLab, tmp_path: Path) -> None:
    provider = EngineImageProvider()
    repository = f"{lab.registry.address}/imgprov/app"
    context = _context(tmp_path)
    props = _props(lab, context, repository)

    created = provider.create(props)
    outs = created.outs
    assert created.id == f"{repository}:1.0.0"
    assert re.fullmatch(rf"{re.escape(repository)}@sha256:[0-9a-f]{{64}}", outs["repoDigest"])
    digest = outs["repoDigest"].split("@")[1]
    # The registry serves the pushed manifest under the tag, with the digest the output names.
    assert lab.registry.manifest_digest("imgprov/app", "1.0.0") == digest
    client = docker.DockerClient(base_url=lab.docker_host)
    image = client.images.get(f"{repository}:1.0.0")
    assert outs["repoDigest"] in image.attrs["RepoDigests"]
    assert image.labels["dev.vertice.greeting"] == "hello"  # the build args reached the Dockerfile

    # Same tree, same args: no change, so a second `pulumi up` neither builds nor pushes.
    same = _props(lab, context, repository)
    assert provider.diff(created.id, outs, same).changes is False
    # .dockerignore'd files are not part of the image, so they do not change it either.
    (context / "notes.local").write_text("edited\n")
    assert context_digest(context, "Dockerfile", same["buildArgs"], None) == props["contextDigest"]

    # An edit of a sent file: an update in place (same name), a new build and a new digest.
    (context / "app.txt").write_text("version 2\n")
    edited = _props(lab, context, repository)
    diff = provider.diff(created.id, outs, edited)
    assert diff.changes is True and not diff.replaces
    updated = provider.update(created.id, outs, edited).outs
    assert updated["repoDigest"] != outs["repoDigest"]
    assert lab.registry.manifest_digest("imgprov/app", "1.0.0") == updated["repoDigest"].split("@")[1]
    # A new repository or tag is a replacement.
    assert provider.diff(created.id, outs, edited | {"tag": "1.0.1"}).replaces == ["tag"]

    provider.delete(created.id, updated)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{repository}:1.0.0")
    assert lab.registry.manifest_digest("imgprov/app", "1.0.0") is None
    client.close()


def test_delete_keeps_the_manifest_where_the_registry_refuses_deletes(lab: DockerLab, tmp_path: Path) -> None:
    repository = f"{lab.registry_no_delete.address}/imgprov/kept"
    outs = build_and_push(_props(lab, _context(tmp_path), repository))
    summary = delete_image(outs)
    assert "local tag removed" in summary and "does not allow deletes" in summary
    assert lab.registry_no_delete.manifest_digest("imgprov/kept", "1.0.0") == outs["repoDigest"].split("@")[1]


def test_delete_without_registry_delete_leaves_the_registry_alone(lab: DockerLab, tmp_path: Path) -> None:
    repository = f"{lab.registry.address}/imgprov/shared"
    outs = build_and_push(_props(lab, _context(tmp_path), repository, registryDelete=False))
    assert "registry left as is" in delete_image(outs)
    assert lab.registry.manifest_digest("imgprov/shared", "1.0.0") == outs["repoDigest"].split("@")[1]


def test_a_failing_build_is_an_error_with_the_daemons_words(lab: DockerLab, tmp_path: Path) -> None:
    context = _context(tmp_path)
    (context / "Dockerfile").write_text(DOCKERFILE + "COPY missing.txt /missing.txt\n")
    props = _props(lab, context, f"{lab.registry.address}/imgprov/broken")
    with pytest.raises(EngineImageError, match=r"build of .*imgprov/broken:1.0.0 failed.*missing.txt"):
        build_and_push(props)
    # Nothing was pushed.
    assert lab.registry.manifest_digest("imgprov/broken", "1.0.0") is None


def test_an_unreachable_registry_is_an_error(lab: DockerLab, tmp_path: Path) -> None:
    props = _props(lab, _context(tmp_path), f"127.0.0.1:{free_port()}/imgprov/nowhere")
    with pytest.raises(EngineImageError, match=r"push of 127\.0\.0\.1:\d+/imgprov/nowhere:1\.0\.0 failed"):
        build_and_push(props)


def test_an_unreachable_daemon_is_an_error(lab: DockerLab, tmp_path: Path) -> None:
    props = _props(
        lab, _context(tmp_path), f"{lab.registry.address}/imgprov/x", dockerHost="unix:///nonexistent.sock"
    )
    with pytest.raises(
        EngineImageError, match=r"cannot reach the Docker daemon at unix:///nonexistent\.sock"
    ):
        build_and_push(props)
