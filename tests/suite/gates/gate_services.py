"""Real processes for the gate tests: the mini service on a free port, readiness waits."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from immune_suite.paths import REPO_ROOT

__all__ = ["MINI_SERVICE", "REPO_ROOT", "TOKEN"]

MINI_SERVICE = Path(__file__).resolve().parent / "mini_service.py"
TOKEN = "gate-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")


@dataclass
class RunningService:
    url: str
    token: str
    process: subprocess.Popen[bytes]
