"""Real processes for the gate tests: the mini service on a free port, readiness waits."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from immune_suite.paths import REPO_ROOT
from tests.support.ports import free_port

__all__ = ["MINI_SERVICE", "REPO_ROOT", "TOKEN"]

MINI_SERVICE = Path(__file__).resolve().parent / "mini_service.py"
TOKEN = "gate-test-token"
IMMUNE_CORE = Path(sys.executable).parent / "immune-core"


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


@contextmanager
def serving_immune_core(env: dict[str, str], log_path: Path, timeout_s: float) -> Iterator[RunningService]:
    """`immune-core serve` on a free port with exactly `env` (TOKEN among its API tokens), its output in
    `log_path`; yields it once /health/ready answers 200 (RuntimeError after `timeout_s` seconds) and
    stops it afterwards."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(IMMUNE_CORE), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, timeout_s=timeout_s)
            yield RunningService(url, TOKEN, process)
        finally:
            process.terminate()
            process.wait(timeout=30)
