"""Operator controls name their run: a stray pause/abort never reaches another promotion; a pause
holds traffic on stable, and a failing canary is still rolled back when a pause arrives during it."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from immune_suite.cli import main
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.pipeline.run_state import RunState, RunStore
from immune_suite.pipeline.runner import Pipeline
from immune_suite.progress import RecordingProgress
from immune_suite.stack_config import StackConfig, load_stack
from immune_suite.targets.base import Color, TrafficState
from tests.suite.support import MemoryTarget, ScriptedGates, promote, release


@pytest.fixture
def established(state_dir: Path, stack_config: StackConfig, memory_target: MemoryTarget) -> ScriptedGates:
    gates = ScriptedGates(memory_target)
    _, code = promote(stack_config, memory_target, gates, "v1")
    assert code is ExitCode.OK
    return gates


def traffic_calls(target: MemoryTarget) -> list[Any]:
    return [c[1] for c in target.calls if c[0] == "traffic"]


def test_a_stray_abort_for_run_a_does_not_abort_run_b(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    store = RunStore(stack_config.name)
    run_a, code_a = promote(stack_config, memory_target, established, "v2")
    assert code_a is ExitCode.OK
    # Left over after A finished (e.g. `abort` raced A's end, or A's process died before clearing it).
    store.set_control(run_a.run_id, abort="too late for A", by="dave")
    run_b, code_b = promote(stack_config, memory_target, established, "v3")
    assert run_b.run_id != run_a.run_id
    assert code_b is ExitCode.OK and run_b.status == "promoted" and run_b.failure is None
    assert memory_target.served_by() is Color.BLUE and memory_target.releases[Color.BLUE] is not None
    ignored = [e for e in run_b.timeline if e["event"] == "ignored a control addressed to another run"]
    assert ignored and ignored[0]["control_run"] == run_a.run_id
    assert store.controls() == {}  # spent


def test_an_abort_addressed_to_the_run_still_aborts_it(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    pipeline = Pipeline(stack_config, memory_target, established.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release("v2"))
    RunStore(stack_config.name).set_control(run.run_id, abort="bad smell", by="bob")
    assert pipeline.execute(run) is ExitCode.ABORTED and memory_target.served_by() is Color.BLUE


def test_a_control_for_another_run_replaces_never_merges(state_dir: Path) -> None:
    store = RunStore("merge")
    store.set_control("run-a", abort="for A", by="x")
    store.set_control("run-b", paused=True, by="y")
    assert store.controls("run-a") == {}
    assert store.controls("run-b")["paused"] and "abort" not in store.controls("run-b")


class PausingGates(ScriptedGates):
    """Sends `pause` (addressed to `run_id`) while the first canary load is running."""

    run_id: str = ""

    def load(self, base_url: str, *args: Any, **kwargs: Any) -> Any:
        if self.run_id and not RunStore("unit").controls(self.run_id):
            RunStore("unit").set_control(self.run_id, paused=True, by="erin")
        return super().load(base_url, *args, **kwargs)


def paused_run(
    stack: StackConfig, target: MemoryTarget, version: str
) -> tuple[Pipeline, RunState, PausingGates]:
    gates = PausingGates(target)
    pipeline = Pipeline(stack, target, gates.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release(version))
    gates.run_id = run.run_id
    return pipeline, run, gates


def test_pause_during_a_failing_canary_still_rolls_back(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    pipeline, run, gates = paused_run(stack_config, memory_target, "v2")
    gates.slow_versions.add("v2")
    code = pipeline.execute(run)  # would hang if the pause stopped the rollback: nobody resumes
    assert code is ExitCode.GATE_FAILED and run.status == "rolled_back"
    assert run.failure and run.failure["step"] == "canary-10"
    assert memory_target.served_by() is Color.BLUE and memory_target.releases[Color.GREEN] is None
    assert "paused" not in [e["event"] for e in run.timeline]


def test_pause_between_canary_steps_holds_traffic_on_stable_until_resume(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    pipeline, run, _ = paused_run(stack_config, memory_target, "v2")
    store = RunStore(stack_config.name)
    seen_while_paused: list[Any] = []

    def resume_once_paused() -> None:
        while True:  # wait (without a time limit in the assertion) until the pipeline has paused
            stored = store.load()
            if stored and any(e["event"] == "paused" for e in stored.timeline):
                break
            threading.Event().wait(0.01)
        seen_while_paused.append(memory_target.routing)
        store.set_control(run.run_id, paused=False, by="erin")

    resumer = threading.Thread(target=resume_once_paused)
    resumer.start()
    code = pipeline.execute(run)
    resumer.join()
    assert code is ExitCode.OK
    assert seen_while_paused == [TrafficState(Color.BLUE, 0)]  # nobody on the canary
    calls = traffic_calls(memory_target)
    ten = calls.index((Color.BLUE, 10))
    # canary-10 ran its full window, then: back to stable while paused, as before on resume, next step
    assert calls[ten : ten + 4] == [(Color.BLUE, 10), (Color.BLUE, 0), (Color.BLUE, 10), (Color.BLUE, 50)]
    paused = next(e for e in run.timeline if e["event"] == "paused")
    assert paused["traffic_held_on_stable"] is True and paused["by"] == "erin"


# -- the CLI: controls are addressed to a run, and refused when aimed elsewhere ------------------------
@pytest.fixture
def open_run(state_dir: Path, memory_target: MemoryTarget) -> RunState:
    """An unfinished run of the `local` stack, as a running pipeline leaves it in run.json."""
    stack = load_stack("local")
    pipeline = Pipeline(stack, memory_target, ScriptedGates(memory_target).as_gates(), RecordingProgress())
    return pipeline.new_run(release("v9"))


def test_pause_names_its_run_and_refuses_another(open_run: RunState) -> None:
    store = RunStore("local")
    assert main(["pause", "--stack", "local", "--run", "20200101T000000Z-deadbeef"]) == ExitCode.NOTHING_TO_DO
    assert store.controls() == {}  # refused: nothing written
    assert main(["pause", "--stack", "local", "--run", open_run.run_id, "--by", "fay"]) == ExitCode.OK
    assert store.controls(open_run.run_id)["paused"] is True
    assert main(["resume", "--stack", "local", "--run", "someone-else"]) == ExitCode.NOTHING_TO_DO
    assert store.controls(open_run.run_id)["paused"] is True


def test_pause_without_run_id_addresses_the_unfinished_run(open_run: RunState) -> None:
    assert main(["pause", "--stack", "local"]) == ExitCode.OK
    assert RunStore("local").controls()["run_id"] == open_run.run_id


def test_pause_with_no_unfinished_run_is_refused(state_dir: Path) -> None:
    assert main(["pause", "--stack", "local"]) == ExitCode.NOTHING_TO_DO
    assert RunStore("local").controls() == {}


def test_abort_aimed_at_another_run_is_refused(open_run: RunState) -> None:
    code = main(["abort", "--stack", "local", "--run", "20200101T000000Z-deadbeef", "--reason", "x"])
    assert code == ExitCode.NOTHING_TO_DO and RunStore("local").controls() == {}


def test_status_names_the_run_and_whom_a_pending_control_is_for(
    open_run: RunState,
    memory_target: MemoryTarget,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("immune_suite.cli.make_target", lambda stack, repo=None: memory_target)
    assert main(["pause", "--stack", "local", "--by", "gus"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["status", "--stack", "local"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"run {open_run.run_id}: running" in out
    assert f"pending control for run {open_run.run_id}: paused by gus" in out and "ignored" not in out
    RunStore("local").set_control("20200101T000000Z-deadbeef-0000", abort="stale", by="hal")
    assert main(["status", "--stack", "local", "--json"]) == ExitCode.OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["run"]["run_id"] == open_run.run_id
    assert payload["controls"]["run_id"] != open_run.run_id
    assert main(["status", "--stack", "local"]) == ExitCode.OK
    assert "(ignored: not the unfinished run)" in capsys.readouterr().out


def test_pause_after_the_switch_leaves_traffic_on_the_new_release(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    store = RunStore(stack_config.name)
    gates = established.as_gates()
    pipeline = Pipeline(stack_config, memory_target, gates, RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release("v2"))

    def pausing_post_check(*args: Any, **kwargs: Any) -> Any:
        store.set_control(run.run_id, paused=True, by="ida")  # arrives while post-check runs
        return gates.post_check(*args, **kwargs)

    pipeline.gates = dataclasses.replace(gates, post_check=pausing_post_check)
    seen_while_paused: list[Any] = []

    def resume_once_paused() -> None:
        while not any(e["event"] == "paused" for e in (store.load() or run).timeline):
            threading.Event().wait(0.01)
        seen_while_paused.append(memory_target.routing)
        store.set_control(run.run_id, paused=False, by="ida")

    resumer = threading.Thread(target=resume_once_paused)
    resumer.start()
    assert pipeline.execute(run) is ExitCode.OK
    resumer.join()
    # After the switch the candidate is the stable release: a pause is not a rollback.
    assert seen_while_paused == [TrafficState(Color.GREEN, 0)]
    paused = next(e for e in run.timeline if e["event"] == "paused")
    assert paused["traffic_held_on_stable"] is False
