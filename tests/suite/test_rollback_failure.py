"""A rollback the target refuses ends `rollback_failed` (exit 10), says what is where, and is finished
later by the guard (local) or a retrying restore (no resident guard), never reported as rolled back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from immune_suite.cli import Session, main
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.pipeline.guard import guard_once, restore_until_settled, unsettled
from immune_suite.pipeline.run_state import RunState, RunStore, StackLock
from immune_suite.pipeline.runner import Pipeline
from immune_suite.progress import RecordingProgress
from immune_suite.record import write_signed_record
from immune_suite.report import write_report
from immune_suite.signing import load_public_key, verify_record
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Color, TargetError, TargetSnapshot, TrafficState
from tests.suite.support import MemoryTarget, ScriptedGates, promote, release


class BrokenTarget(MemoryTarget):
    """A target whose way back fails: routing everything to one colour (weight 0) and/or `restore`
    raise while their refusal counters are above zero (each refusal counts one down)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse_traffic = 0
        self.refuse_restore = 0
        self.error: type[Exception] = TargetError

    def set_traffic(self, active: Color, canary_weight: int) -> TrafficState:
        if canary_weight == 0 and self.refuse_traffic > 0:
            self.refuse_traffic -= 1
            self.calls.append(("refused traffic", (active, canary_weight)))
            raise self.error("proxy admin socket refused the change")
        return super().set_traffic(active, canary_weight)

    def restore(self, snapshot: TargetSnapshot) -> None:
        if self.refuse_restore > 0:
            self.refuse_restore -= 1
            raise self.error("scale down of the candidate timed out")
        super().restore(snapshot)


@pytest.fixture
def fragile_stack(stack_config: StackConfig) -> StackConfig:
    return stack_config.with_overrides(rollback_retry_s=0.3)


@pytest.fixture
def broken() -> BrokenTarget:
    return BrokenTarget()


@pytest.fixture
def established(state_dir: Path, fragile_stack: StackConfig, broken: BrokenTarget) -> ScriptedGates:
    gates = ScriptedGates(broken)
    _, code = promote(fragile_stack, broken, gates, "v1")
    assert code is ExitCode.OK and broken.served_by() is Color.BLUE
    return gates


def failed_rollback(
    stack: StackConfig, target: BrokenTarget, gates: ScriptedGates
) -> tuple[RunState, ExitCode]:
    """A slow candidate fails canary-10; every attempt to put traffic back is refused."""
    gates.slow_versions.add("v2")
    target.refuse_traffic = 10_000
    return promote(stack, target, gates, "v2")


def test_refused_rollback_is_rollback_failed_with_what_is_where(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    run, code = failed_rollback(fragile_stack, broken, established)
    assert code is ExitCode.ROLLBACK_FAILED and int(code) == 10
    assert run.status == run.current == "rollback_failed" and run.finished and unsettled(run)
    assert broken.served_by() is None  # really still split: 10 % on the failing candidate
    failure = run.failure
    assert failure is not None and failure["step"] == "canary-10"  # what caused the rollback is kept
    assert "refused" in failure["rollback_error"] and failure["exit_code"] == 10
    where = failure["where"]
    assert where["traffic"] == {"active": "blue", "canary_weight": 10}
    assert where["shares"] == {"blue": 90, "green": 10}
    assert where["colours"]["green"]["release"] == "v2" and where["colours"]["green"]["live_replicas"] == 2
    assert run.steps["rollback"].status == "failed"
    # The rollback was retried with backoff, not tried once.
    assert sum(1 for c in broken.calls if c[0] == "refused traffic") >= 2
    stored = RunStore(fragile_stack.name).load()
    assert stored is not None and stored.status == "rollback_failed"


def test_the_signed_record_says_rollback_failed(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    run, _ = failed_rollback(fragile_stack, broken, established)
    path = write_signed_record(run, fragile_stack, broken.name)
    record = json.loads(path.read_text())
    assert verify_record(record, load_public_key()).valid
    assert record["outcome"] == "rollback_failed"
    assert record["failure"]["where"]["shares"] == {"blue": 90, "green": 10}
    html = write_report(path).read_text()
    assert "ROLLBACK FAILED" in html and "ingress: 90% blue, 10% green" in html


def test_an_unexpected_error_in_the_rollback_is_rollback_failed_too(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    broken.error = RuntimeError  # not a TargetError: used to escape the loop and leave the run open
    run, code = failed_rollback(fragile_stack, broken, established)
    assert code is ExitCode.ROLLBACK_FAILED and run.status == "rollback_failed"


def test_candidate_left_running_is_rollback_failed_with_traffic_on_stable(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    established.slow_versions.add("v2")
    broken.refuse_restore = 10_000
    run, code = promote(fragile_stack, broken, established, "v2")
    assert code is ExitCode.ROLLBACK_FAILED
    assert broken.served_by() is Color.BLUE and broken.releases[Color.GREEN] is not None
    assert run.failure and run.failure["where"]["shares"] == {"blue": 100}
    assert "candidate not scaled away" in run.failure["rollback_error"]


def test_a_rollback_that_succeeds_on_retry_is_rolled_back(
    established: ScriptedGates, stack_config: StackConfig, broken: BrokenTarget
) -> None:
    established.slow_versions.add("v2")
    broken.refuse_traffic = 2  # the rollback's first two attempts
    run, code = promote(stack_config, broken, established, "v2")
    assert code is not ExitCode.ROLLBACK_FAILED and run.status == "rolled_back"
    assert broken.served_by() is Color.BLUE and broken.releases[Color.GREEN] is None


def test_guard_keeps_restoring_until_stable_has_all_traffic(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    failed_rollback(fragile_stack, broken, established)
    progress = RecordingProgress()
    assert not guard_once(fragile_stack.name, broken, progress)  # still refused: keeps at it
    assert not guard_once(fragile_stack.name, broken, progress)
    run = RunStore(fragile_stack.name).load()
    assert run is not None and unsettled(run) and run.failure
    assert run.failure["restore_attempts"] == 2 and "refused" in run.failure["last_restore_error"]
    assert broken.served_by() is None

    broken.refuse_traffic = 0  # the proxy answers again
    assert guard_once(fragile_stack.name, broken, progress)
    assert broken.served_by() is Color.BLUE and broken.releases[Color.GREEN] is None
    run = RunStore(fragile_stack.name).load()
    assert run is not None and run.settled_at is not None and not unsettled(run)
    assert run.status == "rollback_failed"  # history is not rewritten; settled_at says it is over now
    assert run.failure and run.failure["where_when_settled"]["shares"] == {"blue": 100}
    assert not guard_once(fragile_stack.name, broken, progress)  # nothing left to do


def test_guard_does_not_restore_under_a_live_owner(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    failed_rollback(fragile_stack, broken, established)
    broken.refuse_traffic = 0
    with StackLock(fragile_stack.name):
        assert not guard_once(fragile_stack.name, broken, RecordingProgress())
    assert broken.served_by() is None


def test_retrying_restore_keeps_at_it_until_stable(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    """What the CLI runs in the foreground where no guard lives beside the stack (Kubernetes)."""
    run, _ = failed_rollback(fragile_stack, broken, established)
    broken.refuse_traffic = 3
    store = RunStore(fragile_stack.name)
    assert restore_until_settled(store, broken, run, RecordingProgress(), initial_s=0.01, max_wait_s=0.05)
    assert run.failure and run.failure["restore_attempts"] == 4
    assert broken.served_by() is Color.BLUE and broken.releases[Color.GREEN] is None


def test_retrying_restore_with_a_budget_gives_up_and_says_so(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    run, _ = failed_rollback(fragile_stack, broken, established)
    store = RunStore(fragile_stack.name)
    assert not restore_until_settled(store, broken, run, RecordingProgress(), budget_s=0.1, initial_s=0.01)
    assert unsettled(run) and broken.served_by() is None


def test_next_promotion_is_refused_while_traffic_may_be_split(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget, tmp_path: Path
) -> None:
    failed_rollback(fragile_stack, broken, established)
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(json.dumps(fragile_stack.model_dump()))
    session = Session(argparse.Namespace(stack=str(stack_file), json=True, repo=None))
    session._target = broken
    run = session.store.load()
    assert run is not None
    assert not session.settle_previous(run)  # still refused within the stack's retry budget
    broken.refuse_traffic = 0
    assert session.settle_previous(run) and broken.served_by() is Color.BLUE


def test_a_pipeline_dead_in_its_rollback_step_is_guarded(
    established: ScriptedGates, fragile_stack: StackConfig, broken: BrokenTarget
) -> None:
    pipeline = Pipeline(fragile_stack, broken, established.as_gates(), RecordingProgress(), poll_s=0.01)
    run = pipeline.new_run(release("v2"))
    broken.set_traffic(Color.BLUE, 50)
    run.current = "rollback"  # as a SIGKILL in the middle of the rollback leaves it
    RunStore(fragile_stack.name).save(run)
    assert guard_once(fragile_stack.name, broken, RecordingProgress())
    assert broken.served_by() is Color.BLUE


def test_cli_promote_refuses_and_abort_restores_an_unsettled_run(
    established: ScriptedGates,
    fragile_stack: StackConfig,
    broken: BrokenTarget,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed, _ = failed_rollback(fragile_stack, broken, established)
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(json.dumps(fragile_stack.model_dump()))
    monkeypatch.setattr("immune_suite.cli.make_target", lambda stack, repo=None: broken)
    deploys = len([c for c in broken.calls if c[0] == "deploy"])
    assert main(["promote", "--stack", str(stack_file), "--json"]) == ExitCode.ROLLBACK_FAILED
    stored = RunStore(fragile_stack.name).load()
    assert stored is not None and stored.run_id == failed.run_id  # nothing new started
    assert len([c for c in broken.calls if c[0] == "deploy"]) == deploys
    assert main(["abort", "--stack", str(stack_file), "--json"]) == ExitCode.ROLLBACK_FAILED
    assert broken.served_by() is None
    broken.refuse_traffic = 0
    assert main(["abort", "--stack", str(stack_file), "--json"]) == ExitCode.OK
    assert broken.served_by() is Color.BLUE and broken.releases[Color.GREEN] is None
    run = RunStore(fragile_stack.name).load()
    assert run is not None and run.settled_at and run.status == "rollback_failed"


@pytest.mark.parametrize("kind", ["local", "kubernetes"])
def test_finish_leaves_it_to_the_guard_or_keeps_restoring_in_the_foreground(
    established: ScriptedGates,
    fragile_stack: StackConfig,
    broken: BrokenTarget,
    tmp_path: Path,
    kind: str,
) -> None:
    run, code = failed_rollback(fragile_stack, broken, established)
    broken.refuse_traffic = 1  # one more refusal, then the target recovers
    stack_file = tmp_path / "stack.yaml"
    # The record is signed with a generated key: this test is about restoring traffic, not about keys
    # (a kubernetes stack defaults to a configured key, tests/suite/test_signing_keys.py).
    overrides = fragile_stack.with_overrides(target=kind, signing_key="generated")
    stack_file.write_text(json.dumps(overrides.model_dump()))
    session = Session(argparse.Namespace(stack=str(stack_file), json=True, repo=None))
    session._target = broken
    assert session.finish(run, code) is ExitCode.ROLLBACK_FAILED
    if kind == "local":  # supervisord's guard is in charge from here on
        assert broken.served_by() is None and unsettled(run)
    else:  # nothing of ours runs beside a cluster: the process itself kept at it
        assert broken.served_by() is Color.BLUE and run.settled_at is not None
