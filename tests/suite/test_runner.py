"""The state machine end to end against an in-memory target: promotion, rollback, approval, abort,
crash recovery, and the signed record each run leaves."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from immune_suite.cli import Session, _previous_release
from immune_suite.paths import REPO_ROOT
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.pipeline.run_state import RunStore
from immune_suite.pipeline.runner import Pipeline
from immune_suite.progress import RecordingProgress
from immune_suite.record import write_signed_record
from immune_suite.signing import load_public_key, verify_record
from immune_suite.source import resolve_source, source_tree_of
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Color, Release, TrafficState
from immune_suite.verdict import Status
from tests.suite.support import MemoryTarget, ScriptedGates, promote, release, restarted_after_crash


@pytest.fixture
def established(state_dir: Path, stack_config: StackConfig, memory_target: MemoryTarget) -> ScriptedGates:
    """A stack where v1 was promoted onto blue."""
    gates = ScriptedGates(memory_target)
    run, code = promote(stack_config, memory_target, gates, "v1")
    assert code is ExitCode.OK and run.status == "promoted"
    return gates


def test_first_promotion_goes_straight_to_blue(
    state_dir: Path, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    gates = ScriptedGates(memory_target)
    run, code = promote(stack_config, memory_target, gates, "v1")
    assert code is ExitCode.OK
    assert run.candidate_color is Color.BLUE and run.first_promotion
    assert not [s for s in run.steps if s.startswith("canary")]
    assert memory_target.served_by() is Color.BLUE
    assert gates.calls[0] == "security"


def test_good_candidate_is_promoted_and_old_colour_retired(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.OK
    assert run.candidate_color is Color.GREEN and run.stable and run.stable.version == "v1"
    assert [s for s, r in run.steps.items() if r.status != "passed"] == []
    traffic = [c[1] for c in memory_target.calls if c[0] == "traffic"][-4:]
    assert traffic == [(Color.BLUE, 10), (Color.BLUE, 50), (Color.BLUE, 100), (Color.GREEN, 0)]
    assert memory_target.served_by() is Color.GREEN
    assert memory_target.releases[Color.BLUE] is None  # retired
    # at 100% a baseline load on the stable endpoint keeps the comparison going
    assert "load http://stable" in established.calls


def test_regression_rolls_back_at_first_canary_step(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    established.slow_versions.add("v2")
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.GATE_FAILED
    assert run.status == "rolled_back"
    assert run.failure and run.failure["step"] == "canary-10"
    assert memory_target.served_by() is Color.BLUE
    assert memory_target.releases[Color.GREEN] is None
    stable_release = memory_target.releases[Color.BLUE]
    assert stable_release is not None and stable_release.version == "v1"
    assert "canary-50" not in run.steps
    assert run.metrics["rollback_traffic_s"] >= 0 and "slo_breach_to_stable_s" in run.metrics


def test_security_failure_changes_nothing(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    established.security_status = Status.FAIL
    before = len([c for c in memory_target.calls if c[0] == "deploy"])
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.GATE_FAILED and run.failure and run.failure["step"] == "security"
    assert len([c for c in memory_target.calls if c[0] == "deploy"]) == before
    assert memory_target.served_by() is Color.BLUE


def test_gate_crash_is_a_failure_that_rolls_back(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    established.raise_in_load = True
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.GATE_FAILED
    assert run.failure and "locust crashed" in run.failure["reason"]
    assert memory_target.served_by() is Color.BLUE


def test_api_fuzz_failure_rolls_back_before_any_traffic(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    established.fuzz_status = Status.FAIL
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.GATE_FAILED and run.failure and run.failure["step"] == "api-fuzz"
    assert "fuzz http://preview" in established.calls
    assert ("traffic", (Color.BLUE, 10)) not in memory_target.calls
    assert memory_target.served_by() is Color.BLUE and memory_target.releases[Color.GREEN] is None


def test_chaos_failure_rolls_back_after_full_canary(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    established.chaos_status = Status.FAIL
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.GATE_FAILED and run.failure and run.failure["step"] == "chaos"
    assert memory_target.served_by() is Color.BLUE


def test_approval_suspends_then_continues(state_dir: Path, memory_target: MemoryTarget) -> None:
    stack = StackConfig.model_validate(
        {"name": "gated", "approval_required": True, "chaos": {"enabled": False}}
    )
    gates = ScriptedGates(memory_target)
    pipeline = Pipeline(stack, memory_target, gates.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release("v1"))
    assert pipeline.execute(run) is ExitCode.AWAITING_APPROVAL
    stored = RunStore("gated").load()
    assert stored and stored.status == "awaiting_approval" and stored.current == "approval"
    assert gates.calls == [] and memory_target.releases[Color.BLUE] is None
    stored.approvals.append({"by": "alice@host", "at": "now", "via": "test"})
    pipeline.recover(stored, same_candidate=True)
    assert pipeline.execute(stored) is ExitCode.OK
    assert stored.steps["approval"].status == "passed"


def test_abort_control_rolls_back(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    pipeline = Pipeline(stack_config, memory_target, established.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release("v2"))
    RunStore(stack_config.name).set_control(run.run_id, abort="bad smell", by="bob")
    code = pipeline.execute(run)
    assert code is ExitCode.ABORTED
    assert run.failure and "bob" in run.failure["reason"]
    assert memory_target.served_by() is Color.BLUE
    assert RunStore(stack_config.name).controls() == {}


def test_crash_mid_canary_resumes_with_traffic_on_stable_first(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    stored, pipeline = restarted_after_crash(stack_config, memory_target, established)
    mark = len(memory_target.calls)
    pipeline.recover(stored, same_candidate=True)
    assert memory_target.calls[mark] == ("traffic", (Color.BLUE, 0))  # before anything else
    assert stored.current == "canary-10"  # the whole analysis is redone
    assert any(e["event"].startswith("recovered") for e in stored.timeline)
    assert pipeline.execute(stored) is ExitCode.OK
    assert memory_target.served_by() is Color.GREEN


def test_crash_then_different_candidate_rolls_the_old_run_back(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    stored, pipeline = restarted_after_crash(stack_config, memory_target, established)
    pipeline.recover(stored, same_candidate=False)
    assert stored.current == "rollback"
    assert pipeline.execute(stored) is ExitCode.ABORTED
    assert memory_target.served_by() is Color.BLUE and memory_target.releases[Color.GREEN] is None


def test_every_run_leaves_a_signed_record(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    established.slow_versions.add("v2")
    run, _ = promote(stack_config, memory_target, established, "v2")
    path = write_signed_record(run, stack_config, memory_target.name)
    record = json.loads(path.read_text())
    assert verify_record(record, load_public_key()).valid
    assert record["outcome"] == "rolled_back" and record["failure"]["step"] == "canary-10"
    canary = next(s for s in record["stages"] if s["id"] == "canary-10")
    names = {m["name"] for m in canary["verdict"]["measurements"]}
    assert {"canary_p95_ms", "mann_whitney_p_value", "canary_samples"} <= names
    record["failure"]["step"] = "canary-50"
    assert not verify_record(record, load_public_key()).valid


def test_session_gates_factory_is_the_real_gates() -> None:
    assert Session.gates_factory.__name__ == "default_gates"


def test_stable_routing_helper_is_serialisable() -> None:
    assert TrafficState.from_dict(TrafficState(Color.BLUE, 10).to_dict()) == TrafficState(Color.BLUE, 10)


def test_pause_holds_the_run_until_resumed(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    import threading

    store = RunStore(stack_config.name)
    pipeline = Pipeline(stack_config, memory_target, established.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release("v2"))
    store.set_control(run.run_id, paused=True, by="carol")
    resumer = threading.Timer(0.3, lambda: store.set_control(run.run_id, paused=False, by="carol"))
    resumer.start()
    code = pipeline.execute(run)
    resumer.join()
    assert code is ExitCode.OK
    events = [e["event"] for e in run.timeline]
    assert events.index("paused") < events.index("resumed after pause") < events.index("step started")


def test_full_canary_step_splits_the_load_with_its_baseline(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    promote(stack_config, memory_target, established, "v2")
    scales = dict(established.rps_scales)
    assert scales["http://ingress"] == [1.0, 1.0, 0.5]
    assert scales["http://stable"] == [0.5]


def test_a_fresh_baseline_runs_beside_the_canary_and_stops_with_it(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    assert ("start_baseline", "v1") not in memory_target.calls  # the first promotion has no canary
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.OK
    calls = memory_target.calls
    deployed = calls.index(("deploy", Color.GREEN))
    assert calls[deployed + 1] == ("start_baseline", "v1")  # stable's release, started with the canary
    stopped = calls.index(("stop_baseline", "v1"))
    assert calls.index(("traffic", (Color.BLUE, 100))) < stopped < calls.index(("traffic", (Color.GREEN, 0)))
    assert memory_target.baseline is None
    events = [e["event"] for e in run.timeline]
    assert "baseline started" in events and "baseline stopped" in events


def test_a_rolled_back_canary_leaves_no_baseline_running(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    established.slow_versions.add("v2")
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.GATE_FAILED and run.status == "rolled_back"
    assert ("start_baseline", "v1") in memory_target.calls
    assert memory_target.baseline is None


def test_an_image_release_is_scanned_from_the_commit_it_was_built_from(
    state_dir: Path, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    # On image-based stacks the digest names the image; the security gate scans the ref's source.
    commit = resolve_source(REPO_ROOT, "HEAD~1")
    image = Release(commit.version, commit.commit, "sha256:" + "ab" * 32)
    assert source_tree_of(REPO_ROOT, image) == commit.tree
    gates = ScriptedGates(memory_target)
    pipeline = Pipeline(stack_config, memory_target, gates.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(image)
    outcome = pipeline._run_step(run, run.plan[0])
    assert run.plan[0].id == "security" and outcome.passed
    scanned = next(state_dir.rglob("source"))
    assert (scanned / "pyproject.toml").is_file()
    # Bad case: a ref git does not know is an error, never a scan of nothing.
    with pytest.raises(subprocess.CalledProcessError):
        source_tree_of(REPO_ROOT, Release("x", "no-such-ref-anywhere", "sha256:" + "cd" * 32))
    # The local stack's digest is its tree: taken as it is.
    assert source_tree_of(REPO_ROOT, Release("x", "WORKTREE", "git-tree:abc")) == "abc"


def test_a_split_no_run_owns_goes_back_to_stable_before_the_candidate_is_deployed(
    established: ScriptedGates,
    stack_config: StackConfig,
    memory_target: MemoryTarget,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A runner killed mid-canary, its journal gone with its workspace (CI's state dir): the next run
    finds 50 % on green and must not deploy its candidate to green while green takes traffic, nor
    restore "the routing it started from" (the split) when it rolls back."""
    from tests.suite.support import crashed_mid_canary

    crashed_mid_canary(stack_config, memory_target, established)
    assert memory_target.routing == TrafficState(Color.BLUE, 50)
    monkeypatch.setenv("IMMUNE_STATE_DIR", str(tmp_path / "a-fresh-runner"))
    established.slow_versions.add("v3")
    mark = len(memory_target.calls)
    run, code = promote(stack_config, memory_target, established, "v3")
    calls = memory_target.calls[mark:]
    # Routing back first, then the orphaned baseline stopped, and only then the deploy.
    assert calls[:3] == [("traffic", (Color.BLUE, 0)), ("stop_baseline", "v1"), ("deploy", Color.GREEN)]
    assert run.snapshot is not None and run.snapshot.traffic == TrafficState(Color.BLUE, 0)
    assert any(e["event"].startswith("orphaned split") for e in run.timeline)
    assert code is ExitCode.GATE_FAILED and run.status == "rolled_back"
    assert memory_target.routing == TrafficState(Color.BLUE, 0)  # not the orphaned 50 %


def test_traffic_all_on_one_colour_is_left_alone_at_the_start(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget
) -> None:
    mark = len(memory_target.calls)
    run, code = promote(stack_config, memory_target, established, "v2")
    assert code is ExitCode.OK
    assert memory_target.calls[mark][0] == "deploy"  # no routing change before the deploy
    assert not any(e["event"].startswith("orphaned split") for e in run.timeline)


IMAGE_V2, IMAGE_V3 = "sha256:" + "2" * 64, "sha256:" + "3" * 64


def _session_on(stack: StackConfig, target: MemoryTarget, tmp_path: Path) -> Session:
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(json.dumps(stack.model_dump()))
    session = Session(argparse.Namespace(stack=str(stack_file), json=True, repo=None))
    session._target = target  # type: ignore[assignment]
    return session


def test_rollback_on_a_fresh_runner_takes_the_release_the_stack_recorded(
    established: ScriptedGates,
    stack_config: StackConfig,
    memory_target: MemoryTarget,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """v1 then v2 promoted, then v3 rolled back at its canary: a runner whose state dir holds no record
    (CI) rolls back to v1, the release the stack keeps recorded on its retired colour, not to v3."""
    promote(stack_config, memory_target, established, "v2", IMAGE_V2)
    established.slow_versions.add("v3")
    _, code = promote(stack_config, memory_target, established, "v3", IMAGE_V3)
    assert code is ExitCode.GATE_FAILED
    monkeypatch.setenv("IMMUNE_STATE_DIR", str(tmp_path / "a-fresh-runner"))
    found = _previous_release(_session_on(stack_config, memory_target, tmp_path))
    assert not isinstance(found, str), found
    assert found[0].version == "v1" and found[1] == {"stack_record": "blue", "version": "v1"}


def test_rollback_on_a_fresh_runner_with_nothing_before_finds_nothing(
    established: ScriptedGates,
    stack_config: StackConfig,
    memory_target: MemoryTarget,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("IMMUNE_STATE_DIR", str(tmp_path / "a-fresh-runner"))
    found = _previous_release(_session_on(stack_config, memory_target, tmp_path))
    assert isinstance(found, str) and "no earlier promoted release" in found  # only v1 ever ran


def test_rollback_prefers_this_state_dirs_records(
    established: ScriptedGates, stack_config: StackConfig, memory_target: MemoryTarget, tmp_path: Path
) -> None:
    for version, image in (("v2", IMAGE_V2), ("v3", IMAGE_V3)):
        run, code = promote(stack_config, memory_target, established, version, image)
        assert code is ExitCode.OK
        write_signed_record(run, stack_config, memory_target.name)
    found = _previous_release(_session_on(stack_config, memory_target, tmp_path))
    assert not isinstance(found, str), found
    assert found[0].version == "v2" and "record" in found[1]
