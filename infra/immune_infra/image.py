"""The service's image per colour: an existing pinned reference from config, or (with
`imageBuild.enabled`) built from app/Dockerfile and pushed to the stack's registry, in which case colours
whose image is `build` get the pushed image's digest reference (`<repository>@sha256:...`).

Two builders (`imageBuild.builder`, docs/infra.md "Image builders"):
- `engine-api`: the program's own dynamic provider over the Docker Engine API (immune_infra.engine_image);
  needs only a Docker daemon and the project's virtualenv — what an air-gapped machine has.
- `pulumi-docker`: pulumi-docker's `Image`; needs the `docker` resource provider plugin.
- `auto` (default): pulumi-docker when its plugin is installed where the engine looks, else engine-api.

pulumi_docker is imported only on its path, so stacks that promote digests need no Docker plugin at all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pulumi

from immune_infra.config import BUILD_IMAGE, COLORS, Color, ImageBuild, StackSettings
from immune_infra.paths import REPOSITORY_ROOT

DOCKER_PLUGIN = "pulumi-resource-docker"


def docker_plugin_installed(environ: dict[str, str] | None = None) -> bool:
    """Whether the engine can load the `docker` resource plugin without downloading it: a
    `resource-docker-v*` directory under $PULUMI_HOME/plugins (default ~/.pulumi) holding the binary, or the
    binary on PATH."""
    env = os.environ if environ is None else environ
    home = Path(env.get("PULUMI_HOME") or Path.home() / ".pulumi")
    for directory in sorted((home / "plugins").glob("resource-docker-v*")):
        if (directory / DOCKER_PLUGIN).is_file():
            return True
    return shutil.which(DOCKER_PLUGIN, path=env.get("PATH", "")) is not None


def chosen_builder(build: ImageBuild, environ: dict[str, str] | None = None) -> str:
    """`engine-api` or `pulumi-docker`: the configured one, or for `auto` what this machine can run."""
    if build.builder != "auto":
        return build.builder
    return "pulumi-docker" if docker_plugin_installed(environ) else "engine-api"


def _pulumi_docker_image(
    name: str, build: ImageBuild, password: pulumi.Output[str] | None, parent: pulumi.Resource
) -> pulumi.Output[str]:
    import pulumi_docker as docker

    registry: docker.RegistryArgs | None = None
    if build.registry_server and build.registry_username:
        registry = docker.RegistryArgs(
            server=build.registry_server, username=build.registry_username, password=password
        )
    image = docker.Image(
        f"{name}-build",
        image_name=f"{build.repository}:{build.tag}",
        build=docker.DockerBuildArgs(
            context=str(REPOSITORY_ROOT / build.context),
            dockerfile=str(REPOSITORY_ROOT / build.dockerfile),
            platform=build.platform,
            args=dict(build.build_args) or None,
        ),
        registry=registry,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return image.repo_digest


def _engine_api_image(
    name: str, build: ImageBuild, password: pulumi.Output[str] | None, parent: pulumi.Resource
) -> pulumi.Output[str]:
    from immune_infra.engine_image import EngineImage

    context = (REPOSITORY_ROOT / build.context).resolve()
    dockerfile = (REPOSITORY_ROOT / build.dockerfile).resolve()
    if not dockerfile.is_relative_to(context):
        raise ValueError(f"imageBuild.dockerfile {build.dockerfile!r} must lie inside imageBuild.context")
    image = EngineImage(
        f"{name}-build",
        repository=build.repository,
        tag=build.tag,
        context=context,
        dockerfile=dockerfile.relative_to(context).as_posix(),
        build_args=build.build_args,
        platform=build.platform,
        docker_host=build.docker_host,
        registry_server=build.registry_server,
        registry_username=build.registry_username,
        registry_password=password,
        registry_delete=build.registry_delete,
        network=build.network,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return image.repo_digest


class ServiceImage(pulumi.ComponentResource):
    by_color: dict[Color, pulumi.Output[str]]
    builder: str | None

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        registry_password: pulumi.Output[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("immune:image:ServiceImage", name, None, opts)
        build = settings.image_build
        built: pulumi.Output[str] | None = None
        self.builder = None
        if build.enabled:
            self.builder = chosen_builder(build)
            make = _pulumi_docker_image if self.builder == "pulumi-docker" else _engine_api_image
            # The digest reference, not the tag: both colours and the promotion record name one exact image.
            built = make(name, build, registry_password, self)
        self.by_color = {}
        for color in COLORS:
            configured = settings.image_for(color)
            if configured == BUILD_IMAGE:
                if built is None:  # the config model already refuses this; keep the program honest
                    raise ValueError(f"rollout.images.{color} is {BUILD_IMAGE!r} but imageBuild is disabled")
                self.by_color[color] = built
            else:
                self.by_color[color] = pulumi.Output.from_input(configured)
        self.register_outputs({"blue": self.by_color["blue"], "green": self.by_color["green"]})
