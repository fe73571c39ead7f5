"""`scripts/cluster.sh status`: ready when everything runs, not ready (non-zero) when the apiserver dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.cluster.support import Kube, run_cluster_sh

pytestmark = pytest.mark.cluster


def _state(pid: int) -> str:
    """The process state letter from /proc/<pid>/stat, '' when the process no longer exists."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return ""


def test_status_ready_when_up(cluster: Kube) -> None:
    proc = run_cluster_sh("status", check=False)
    assert proc.returncode == 0, proc.stdout
    assert "apiserver: ready" in proc.stdout
    assert "Ready" in proc.stdout and "NOT" not in proc.stdout


def test_status_not_ready_when_apiserver_killed_and_up_recovers(cluster: Kube) -> None:
    pid_file = Path(cluster.env["AIC_CLUSTER_STATE"]) / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: wait until the process is gone or a zombie.
    deadline = time.monotonic() + 10
    while _state(pid) not in ("", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc = run_cluster_sh("status", check=False)
    assert proc.returncode != 0
    assert "kube-apiserver: NOT running" in proc.stdout
    assert "apiserver: NOT ready" in proc.stdout
    # `up` on a half-dead cluster takes it down and brings it up again.
    run_cluster_sh("up")
    again = run_cluster_sh("status", check=False)
    assert again.returncode == 0, again.stdout
