"""The dead man's switch moves split traffic back to stable only when nobody holds the stack's lock."""

from __future__ import annotations

from pathlib import Path

from immune_suite.pipeline.guard import guard_once
from immune_suite.pipeline.run_state import RunStore, StackLock
from immune_suite.progress import RecordingProgress
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Color
from tests.suite.support import MemoryTarget, ScriptedGates, crashed_mid_canary, promote


def test_guard_restores_stable_when_the_pipeline_is_gone(
    state_dir: Path, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    gates = ScriptedGates(memory_target)
    promote(stack_config, memory_target, gates, "v1")
    crashed_mid_canary(stack_config, memory_target, gates)
    assert memory_target.served_by() is None  # split, and nobody in charge
    assert guard_once(stack_config.name, memory_target, RecordingProgress())
    assert memory_target.served_by() is Color.BLUE
    run = RunStore(stack_config.name).load()
    assert run is not None and not run.finished  # the next promote/abort decides the candidate's fate
    assert any(e["event"].startswith("guard") for e in run.timeline)
    assert not guard_once(stack_config.name, memory_target, RecordingProgress())  # nothing left to do


def test_guard_leaves_a_live_pipeline_alone(
    state_dir: Path, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    gates = ScriptedGates(memory_target)
    promote(stack_config, memory_target, gates, "v1")
    crashed_mid_canary(stack_config, memory_target, gates)
    with StackLock(stack_config.name):
        assert not guard_once(stack_config.name, memory_target, RecordingProgress())
    assert memory_target.served_by() is None


def test_lock_waits_out_a_brief_holder_but_reports_a_long_one(state_dir: Path) -> None:
    import threading

    import pytest

    from immune_suite.pipeline.run_state import LockHeld

    holder = StackLock("locks").acquire()
    threading.Timer(0.3, holder.release).start()
    with StackLock("locks", wait_s=3.0):
        pass  # got it once the holder let go
    with StackLock("locks"), pytest.raises(LockHeld):
        StackLock("locks", wait_s=0.3).acquire()
