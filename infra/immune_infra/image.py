"""The service's image per colour: an existing pinned reference from config, or (with
`imageBuild.enabled`) built by pulumi-docker from app/Dockerfile and pushed to the stack's registry,
in which case colours whose image is `build` get the pushed image's digest reference.

pulumi_docker is imported only when the build is on, so stacks that promote digests need no Docker
provider plugin at all.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from immune_infra.config import BUILD_IMAGE, COLORS, Color, StackSettings

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class ServiceImage(pulumi.ComponentResource):
    by_color: dict[Color, pulumi.Output[str]]

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
        if build.enabled:
            import pulumi_docker as docker

            registry: docker.RegistryArgs | None = None
            if build.registry_server and build.registry_username:
                registry = docker.RegistryArgs(
                    server=build.registry_server, username=build.registry_username, password=registry_password
                )
            image = docker.Image(
                f"{name}-build",
                image_name=f"{build.repository}:{build.tag}",
                build=docker.DockerBuildArgs(
                    context=str(REPOSITORY_ROOT / build.context),
                    dockerfile=str(REPOSITORY_ROOT / build.dockerfile),
                    platform=build.platform,
                ),
                registry=registry,
                opts=pulumi.ResourceOptions(parent=self),
            )
            # The digest reference, not the tag: both colours and the promotion record name one exact image.
            built = image.repo_digest
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
