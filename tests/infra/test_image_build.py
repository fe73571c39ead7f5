"""The image builders under Pulumi's mocks: `imageBuild.builder` picks pulumi-docker's Image or the program's
own engine-API resource; both deploy the pushed digest; bad settings are refused with the path named."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from immune_infra.config import ConfigError
from immune_infra.engine_image import context_digest, context_files, diff_inputs
from immune_infra.image import chosen_builder, docker_plugin_installed
from immune_infra.render import DYNAMIC_TYPE, REPOSITORY_ROOT, render_only_secrets, render_stack

from tests.infra.support import render

REGISTRY = "127.0.0.1:15000"
BUILD = {
    "enabled": True,
    "repository": f"{REGISTRY}/immune-core",
    "tag": "0.1.0",
    "buildArgs": {"BASE": f"{REGISTRY}/immune/python:3.11-bookworm", "PIP_NO_INDEX": "1"},
}


def _built(builder: str, **build: object) -> dict[str, object]:
    return {"imageBuild": {**BUILD, "builder": builder, **build}, "rollout": {"images": {"green": "build"}}}


def test_engine_api_builder_builds_app_dockerfile_and_deploys_the_digest() -> None:
    rendered = render(
        "staging", _built("engine-api", dockerHost="unix:///run/immune-docker.sock", network="none")
    )
    image = next(res for res in rendered.resources if res.type == DYNAMIC_TYPE)
    inputs = image.inputs
    assert inputs["repository"] == f"{REGISTRY}/immune-core" and inputs["tag"] == "0.1.0"
    assert inputs["context"] == str(REPOSITORY_ROOT) and inputs["dockerfile"] == "app/Dockerfile"
    assert inputs["buildArgs"] == BUILD["buildArgs"]
    assert inputs["dockerHost"] == "unix:///run/immune-docker.sock" and inputs["network"] == "none"
    assert inputs["registryDelete"] is False
    # The diff key is the digest of exactly what the daemon would receive.
    assert inputs["contextDigest"] == context_digest(
        REPOSITORY_ROOT, "app/Dockerfile", BUILD["buildArgs"], "linux/amd64"
    )
    assert len([res for res in rendered.resources if res.type == DYNAMIC_TYPE]) == 1
    assert not [res for res in rendered.resources if res.type.startswith("docker:")]
    green = rendered.find("Deployment", "immune-core-green")["spec"]["template"]["spec"]["containers"][0]
    assert green["image"] == f"{REGISTRY}/immune-core@sha256:" + "0" * 64
    migrate = [job for job in rendered.of_kind("Job") if "migrate-green" in job["metadata"]["name"]]
    assert migrate[0]["spec"]["template"]["spec"]["containers"][0]["image"] == green["image"]
    assert rendered.exports["images"]["green"] == green["image"]
    assert rendered.exports["imageBuilder"] == "engine-api"
    # The component parents the build resource.
    assert image.parent.endswith("immune:image:ServiceImage::immune-image")


def test_pulumi_docker_builder_uses_pulumi_docker_image_with_the_build_args() -> None:
    rendered = render("staging", _built("pulumi-docker", registryServer=REGISTRY, registryUsername="ci"))
    image = next(res for res in rendered.resources if res.type == "docker:index/image:Image")
    assert image.inputs["build"]["dockerfile"].endswith("app/Dockerfile")
    assert image.inputs["build"]["args"] == BUILD["buildArgs"]
    assert image.inputs["imageName"] == f"{REGISTRY}/immune-core:0.1.0"
    assert image.inputs["registry"]["password"] == render_only_secrets("staging")["registryPassword"]
    assert not [res for res in rendered.resources if res.type == DYNAMIC_TYPE]
    green = rendered.find("Deployment", "immune-core-green")["spec"]["template"]["spec"]["containers"][0]
    assert green["image"] == f"{REGISTRY}/immune-core@sha256:" + "0" * 64
    assert rendered.exports["imageBuilder"] == "pulumi-docker"


def test_engine_api_registry_password_is_a_secret_input() -> None:
    rendered = render("staging", _built("engine-api", registryServer=REGISTRY, registryUsername="ci"))
    image = next(res for res in rendered.resources if res.type == DYNAMIC_TYPE)
    assert image.inputs["registryUsername"] == "ci"
    assert image.inputs["registryPassword"] == render_only_secrets("staging")["registryPassword"]


def test_no_build_declares_no_image_resource() -> None:
    rendered = render("staging")
    assert not [
        res for res in rendered.resources if res.type == DYNAMIC_TYPE or res.type.startswith("docker:")
    ]
    assert rendered.exports["imageBuilder"] == "none"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ({"builder": "kaniko"}, r"settings\.imageBuild\.builder: Input should be 'auto', 'engine-api' or "),
        ({"buildArgs": {"BASE_IMAGE": ["a", "b"]}}, r"settings\.imageBuild\.buildArgs\.BASE_IMAGE"),
        ({"registryDelete": "sometimes"}, r"settings\.imageBuild\.registryDelete"),
    ],
)
def test_bad_builder_settings_are_refused_with_their_path(build: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_stack("staging", {"imageBuild": {**BUILD, **build}})


def test_a_dockerfile_outside_the_context_is_refused() -> None:
    with pytest.raises(Exception, match=r"must lie inside imageBuild\.context"):
        render_stack("staging", _built("engine-api", context="app", dockerfile="security/Dockerfile"))


def test_auto_picks_pulumi_docker_only_when_its_plugin_is_installed(tmp_path: Path) -> None:
    from immune_infra.config import ImageBuild

    home = tmp_path / "pulumi-home"
    env = {"PULUMI_HOME": str(home), "PATH": str(tmp_path / "bin")}
    auto = ImageBuild(enabled=True, builder="auto")
    assert not docker_plugin_installed(env)
    assert chosen_builder(auto, env) == "engine-api"
    # An empty plugin directory (an interrupted install) is not a plugin.
    plugin_dir = home / "plugins" / "resource-docker-v4.5.8"
    plugin_dir.mkdir(parents=True)
    assert chosen_builder(auto, env) == "engine-api"
    (plugin_dir / "pulumi-resource-docker").write_text("#!/bin/sh\n")
    assert chosen_builder(auto, env) == "pulumi-docker"
    # On PATH counts too; an explicit choice is never second-guessed.
    bare = {"PULUMI_HOME": str(tmp_path / "empty"), "PATH": str(tmp_path / "bin")}
    (tmp_path / "bin").mkdir()
    binary = tmp_path / "bin" / "pulumi-resource-docker"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert chosen_builder(auto, bare) == "pulumi-docker"
    assert chosen_builder(ImageBuild(enabled=True, builder="engine-api"), bare) == "engine-api"
    assert chosen_builder(ImageBuild(enabled=True, builder="pulumi-docker"), env | {"PULUMI_HOME": "/x"}) == (
        "pulumi-docker"
    )


def test_the_app_context_sends_only_what_the_dockerfile_copies() -> None:
    files = context_files(REPOSITORY_ROOT, "app/Dockerfile")
    assert {"app/Dockerfile", "requirements.lock", "pyproject.toml", "README.md"} <= set(files)
    assert any(path.startswith("app/immune_core/") for path in files)
    assert not [path for path in files if path.startswith((".venv/", ".git/", "tests/", "infra/"))]
    assert not [path for path in files if "__pycache__" in path]


def test_context_digest_follows_content_mode_and_args_not_timestamps(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /\n")
    (tmp_path / "a.txt").write_text("one\n")
    first = context_digest(tmp_path, "Dockerfile", {"BASE_IMAGE": "x:1"}, None)
    os.utime(tmp_path / "a.txt", (0, 0))
    assert context_digest(tmp_path, "Dockerfile", {"BASE_IMAGE": "x:1"}, None) == first
    assert context_digest(tmp_path, "Dockerfile", {"BASE_IMAGE": "x:2"}, None) != first
    assert context_digest(tmp_path, "Dockerfile", {"BASE_IMAGE": "x:1"}, "linux/arm64") != first
    (tmp_path / "a.txt").chmod(0o755)
    moded = context_digest(tmp_path, "Dockerfile", {"BASE_IMAGE": "x:1"}, None)
    assert moded != first
    (tmp_path / "a.txt").write_text("two\n")
    assert context_digest(tmp_path, "Dockerfile", {"BASE_IMAGE": "x:1"}, None) not in (first, moded)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert first != "sha256:" + hashlib.sha256(b"").hexdigest()
    with pytest.raises(FileNotFoundError, match="Dockerfile"):
        context_digest(tmp_path, "Missing.Dockerfile", {}, None)


def test_diff_replaces_on_a_new_name_and_updates_on_new_content() -> None:
    olds = {
        "repository": "r",
        "tag": "1",
        "contextDigest": "sha256:a",
        "buildArgs": {},
        "registryPassword": "p",
    }
    assert diff_inputs(olds, dict(olds)).changes is False
    # Rotating the registry password is no reason to rebuild.
    assert diff_inputs(olds, olds | {"registryPassword": "q"}).changes is False
    content = diff_inputs(olds, olds | {"contextDigest": "sha256:b"})
    assert content.changes is True and content.replaces == []
    assert diff_inputs(olds, olds | {"buildArgs": {"BASE_IMAGE": "b:2"}}).changes is True
    renamed = diff_inputs(olds, olds | {"repository": "s", "tag": "2"})
    assert renamed.changes is True and renamed.replaces == ["repository", "tag"]
