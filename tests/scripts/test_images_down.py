"""`scripts/images.sh down` restores the host's mounts, the images daemon's data root itself included.

dockerd bind-mounts its data root onto itself (a private mount) and that bind outlived `down`: the
sweep only matched mounts *under* the data root. Needs root (mount); nothing else runs: no pid files
in a private state dir means no daemon to stop, only the sweep.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from immune_suite.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def mounted(path: Path) -> bool:
    found = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True)
    return str(path) in found.stdout.splitlines()


def test_down_unmounts_a_leftover_bind_of_the_data_root_and_below_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data_root, layer = state / "docker", state / "docker" / "overlay2" / "abc" / "merged"
    layer.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(data_root), str(data_root)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(layer)], check=True)
    try:
        env = {
            **os.environ,
            "IMMUNE_STATE_DIR": str(state),
            "IMAGES_DOCKER_SOCKET": str(tmp_path / "docker.sock"),
        }
        done = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "images.sh"), "down"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert not mounted(layer) and not mounted(data_root), done.stderr
    finally:
        for path in (layer, data_root):
            while mounted(path):
                subprocess.run(["umount", "-l", str(path)], check=False)
