"""Helpers for the image tests: the project's Docker daemon and registry (scripts/images.sh), and the
images it builds, read from the `images.json` that `images.sh push` writes.

Every call goes to the private daemon through its socket (`DOCKER_HOST` from `images.sh env`) with
Debian's client, never to any other Docker on the machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess  # nosec B404 - the tests drive the project's own scripts and the docker client
from dataclasses import dataclass
from pathlib import Path

from immune_suite.paths import REPO_ROOT

IMAGES_SCRIPT = REPO_ROOT / "scripts" / "images.sh"
DOCKER_CLIENT = "/usr/bin/docker"


def images_script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 3600
) -> subprocess.CompletedProcess[str]:
    """Runs scripts/images.sh with ARGS; never raises on a non-zero exit (callers assert on it)."""
    return subprocess.run(  # nosec B603 - fixed script, arguments from the tests
        ["bash", str(IMAGES_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def images_env() -> dict[str, str]:
    """DOCKER_HOST, IMAGES_REGISTRY and IMAGES_JSON of the shared daemon (`images.sh env`)."""
    done = images_script("env")
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@dataclass(frozen=True)
class BuiltImage:
    """One pushed image: `tag` (registry/name:version), `ref` (registry/name@sha256:...), `version`."""

    name: str
    tag: str
    ref: str
    digest: str
    version: str


@dataclass(frozen=True)
class ImageSet:
    docker_host: str
    registry: str
    images_json: Path
    images: dict[str, BuiltImage]

    def docker(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI against the project's daemon; `check` raises with the output on failure."""
        done = subprocess.run(  # nosec B603 - fixed client binary
            [DOCKER_CLIENT, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "DOCKER_HOST": self.docker_host, "DOCKER_BUILDKIT": "0"},
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done


def build_and_push(names: tuple[str, ...]) -> ImageSet:
    """`images.sh up`, `build NAMES`, `push`; returns what images.json then records. Builds are cached
    (root filesystems by version in ~/.cache, layers in the daemon), so a warm call takes seconds."""
    for args in (("up",), ("build", *names), ("push",)):
        done = images_script(*args)
        assert done.returncode == 0, f"images.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    env = images_env()
    images_json = Path(env["IMAGES_JSON"])
    record = json.loads(images_json.read_text(encoding="utf-8"))
    images = {name: BuiltImage(name=name, **entry) for name, entry in record["images"].items()}
    missing = set(names) - set(images)
    assert not missing, f"images.json lacks {sorted(missing)}"
    return ImageSet(
        docker_host=env["DOCKER_HOST"], registry=record["registry"], images_json=images_json, images=images
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
