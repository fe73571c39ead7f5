"""Fixtures for the gate tests: a real HTTP service (our mini service) on a free port.

The mini service (tests/suite/gates/mini_service.py) is a real uvicorn process speaking the service's API;
tests that need a behaviour switched on (latency, error ratio) start one with that environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.suite.gates.gate_services import MINI_SERVICE, TOKEN, RunningService, wait_ready
from tests.support.ports import free_port


@pytest.fixture
def start_mini_service(tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    started: list[RunningService] = []

    def start(color: str = "green", latency_ms: float = 0.0, error_ratio: float = 0.0) -> RunningService:
        port = free_port()
        env = {
            **os.environ,
            "IMMUNE_API_TOKENS": TOKEN,
            "IMMUNE_FAULT_LATENCY_MS": str(latency_ms),
            "IMMUNE_FAULT_ERROR_RATIO": str(error_ratio),
        }
        log = (tmp_path / f"mini-{port}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, str(MINI_SERVICE), "--port", str(port), "--color", color],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        service = RunningService(f"http://127.0.0.1:{port}", TOKEN, process)
        started.append(service)
        wait_ready(service.url)
        return service

    yield start
    for service in started:
        service.process.terminate()
        service.process.wait(timeout=10)


@pytest.fixture
def mini_service(start_mini_service: Callable[..., RunningService]) -> RunningService:
    return start_mini_service()
