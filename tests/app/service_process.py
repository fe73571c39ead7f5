"""Run ``immune-core serve`` as a real subprocess for end-to-end and failure tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port

IMMUNE_CORE = Path(sys.executable).parent / "immune-core"


class ServiceProcess:
    def __init__(
        self, name: str, env: Mapping[str, str], log_dir: Path, token: str, port: int | None = None
    ) -> None:
        self.name = name
        self.port = port if port is not None else free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log_path = log_dir / f"{name}.log"
        # Only what the test chooses: never inherit IMMUNE_* from the developer's shell.
        base = {k: v for k, v in os.environ.items() if not k.startswith("IMMUNE_")}
        # The tests drive every operation (overrides, cells) with this one token.
        self.env = {**base, "IMMUNE_INSTANCE_ID": name, "IMMUNE_API_TOKENS": f"{token}:admin", **env}
        self.process: subprocess.Popen[bytes] | None = None
        auth = {"Authorization": f"Bearer {token}"}
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0, headers=auth)

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(IMMUNE_CORE), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.client.get("/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"{self.name} not ready after {timeout_s}s:\n{self.log_tail()}")

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post_events(self, events: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post("/api/v1/events", json={"events": events})

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.client.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
