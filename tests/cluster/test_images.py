"""The images the project builds itself (scripts/images.sh, cluster/images/, app/Dockerfile) really run,
are pushed to the local registry and are pullable there by digest; the daemon's status tells the truth.

Containers run with `--network none` (and `exec` into them) or `--network host` on free loopback ports.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.images_support import ImageSet, build_and_push, free_port, images_script

pytestmark = pytest.mark.cluster

IMAGE_NAMES = ("python",)


@pytest.fixture(scope="module")
def image_set() -> ImageSet:
    return build_and_push(IMAGE_NAMES)


@pytest.fixture
def container_names(image_set: ImageSet) -> Iterator[list[str]]:
    """Names of containers a test starts; removed (forcefully) at teardown whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        image_set.docker("rm", "-f", name, check=False)


def test_python_base_runs_debian_python_311(image_set: ImageSet) -> None:
    image = image_set.images["python"]
    done = image_set.docker(
        "run",
        "--rm",
        "--network",
        "none",
        image.ref,
        "python",
        "-c",
        "import ssl, sys, venv; print(sys.version_info[:2], ssl.OPENSSL_VERSION)",
    )
    assert done.stdout.startswith("(3, 11) OpenSSL 3."), done.stdout
    # `tini` is there for images whose process would ignore SIGTERM as PID 1.
    assert (
        image_set.docker("run", "--rm", "--network", "none", image.ref, "tini", "--version").returncode == 0
    )


def test_containers_get_no_network_but_loopback(image_set: ImageSet) -> None:
    """The daemon has no bridge: a container started without --network has only `lo`."""
    done = image_set.docker(
        "run",
        "--rm",
        image_set.images["python"].ref,
        "python",
        "-c",
        "import socket; print(sorted(name for _, name in socket.if_nameindex()))",
    )
    assert done.stdout.strip() == "['lo']"


def _manifest_status(registry: str, repository: str, reference: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{reference}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310
            return response.status, response.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_pushed_image_is_pullable_by_digest(image_set: ImageSet) -> None:
    image = image_set.images["python"]
    repository = image.ref.split("/", 1)[1].split("@")[0]
    status, served = _manifest_status(image_set.registry, repository, image.digest)
    assert (status, served) == (200, image.digest)
    # Drop every local name of the image, then pull it back by digest alone.
    local_id = image_set.docker("image", "inspect", "--format", "{{.Id}}", image.tag).stdout.strip()
    image_set.docker("rmi", image.ref, check=False)
    pulled = image_set.docker("pull", image.ref)
    assert image.digest in pulled.stdout
    assert image_set.docker("image", "inspect", "--format", "{{.Id}}", image.ref).stdout.strip() == local_id


def test_unknown_digest_is_not_pullable(image_set: ImageSet) -> None:
    image = image_set.images["python"]
    repository = image.ref.split("/", 1)[1].split("@")[0]
    bogus = "sha256:" + "0" * 64
    assert _manifest_status(image_set.registry, repository, bogus)[0] == 404
    pulled = image_set.docker("pull", f"{image_set.registry}/{repository}@{bogus}", check=False)
    assert pulled.returncode != 0
    assert "not found" in pulled.stderr.lower() or "unknown" in pulled.stderr.lower()


def test_images_json_names_every_image_by_digest(image_set: ImageSet) -> None:
    record = json.loads(image_set.images_json.read_text(encoding="utf-8"))
    assert record["registry"] == image_set.registry
    for name, entry in record["images"].items():
        assert entry["ref"] == f"{entry['tag'].rsplit(':', 1)[0]}@{entry['digest']}", name
        assert entry["digest"].startswith("sha256:") and len(entry["digest"]) == 71, name


def test_status_is_zero_when_daemon_and_registry_answer(image_set: ImageSet) -> None:
    done = images_script("status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dockerd running" in done.stdout and "registry running" in done.stdout


def test_status_is_nonzero_when_the_daemon_is_down(tmp_path: Path) -> None:
    """A state dir, socket and registry port where nothing runs: status must say so and fail."""
    env = {
        "IMMUNE_STATE_DIR": str(tmp_path / "state"),
        "IMAGES_DOCKER_SOCKET": str(tmp_path / "docker.sock"),
        "IMAGES_REGISTRY_PORT": str(free_port()),
    }
    done = images_script("status", env=env)
    assert done.returncode == 3
    assert "dockerd stopped" in done.stdout and "registry stopped" in done.stdout
