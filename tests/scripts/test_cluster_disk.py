"""`scripts/cluster.sh check-disk` (also run by `up`): a disk too full for the kubelet is refused with the
figures before any cluster process starts, instead of pods left Pending under a disk-pressure taint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from immune_suite.paths import REPO_ROOT

CLUSTER_SH = REPO_ROOT / "scripts" / "cluster.sh"


def _check_disk(tmp_path: Path, percent: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIC_CLUSTER_STATE": str(tmp_path / "state"), "AIC_MIN_FREE_DISK_PERCENT": percent}
    command = ["bash", str(CLUSTER_SH), "check-disk"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_disk_below_the_free_share_is_refused_with_the_figures(tmp_path: Path) -> None:
    completed = _check_disk(tmp_path, "101")  # no disk is ever 101 % free
    assert completed.returncode == 1
    assert "GiB free under" in completed.stderr and "disk pressure" in completed.stderr
    assert not (tmp_path / "state" / "pids").exists(), "nothing of a cluster was started"


def test_a_disk_with_room_passes(tmp_path: Path) -> None:
    completed = _check_disk(tmp_path, "0")
    assert completed.returncode == 0, completed.stderr
