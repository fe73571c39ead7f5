"""Fixtures for the pipeline's unit tests (helpers in tests/suite/support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from immune_suite.progress import RecordingProgress
from immune_suite.stack_config import StackConfig
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
