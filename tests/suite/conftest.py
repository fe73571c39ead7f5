"""Fixtures for the pipeline's tests (helpers in tests/suite/support.py, the e2e stack in local_stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from immune_suite.progress import RecordingProgress
from immune_suite.stack_config import StackConfig
from tests.services import ServiceSet
from tests.suite.support import MemoryTarget


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMMUNE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def stack_config() -> StackConfig:
    return StackConfig.model_validate(
        {
            "name": "unit",
            "canary": {"steps": [10, 50, 100], "step_duration_s": 1},
            "chaos": {"enabled": True, "experiments": ["kill-candidate-instance"]},
            "retire_delay_s": 0,
        }
    )


@pytest.fixture
def memory_target() -> MemoryTarget:
    return MemoryTarget()


@pytest.fixture
def progress() -> RecordingProgress:
    return RecordingProgress()


@pytest.fixture(scope="module")
def private_dependencies() -> Iterator[dict[str, str]]:
    """PostgreSQL, Redis and Kafka of our own for an end-to-end module: the leader lease and the consumer
    group live there, and a shared set is also used by other sessions' service instances."""
    services = ServiceSet.private(("postgres", "redis", "kafka"))
    try:
        yield services.start()
    finally:
        services.discard()
