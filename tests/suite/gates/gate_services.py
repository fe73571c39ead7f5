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


def wait_ready(url: str, timeout_s: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url`/health/ready until 200; RuntimeError after `timeout_s` s or as soon as `process` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the service exited with {process.returncode} before it was ready")
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
    stops it afterwards. A start that exits early (the free port taken meanwhile) is tried once more on
    another port; the error carries the tail of the service's log."""
    for attempt in (1, 2):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(IMMUNE_CORE), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            try:
                wait_ready(url, timeout_s=timeout_s, process=process)
            except RuntimeError as error:
                if attempt == 1 and process.poll() is not None:
                    continue
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"{error}\n--- {log_path.name} ---\n{tail}") from None
            yield RunningService(url, TOKEN, process)
            return
        finally:
            process.terminate()
            process.wait(timeout=30)
