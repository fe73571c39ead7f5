"""Runs a promotion plan step by step, persisting after every transition.

The loop is generic: it looks up the handler for the current step's kind, records the outcome,
and follows the step's `on_pass`/`on_fail` edge. Any exception in a step is a failure of that step
(so traffic always goes back to stable). The rollback step retries the target with backoff; if it
still fails, the run ends `rollback_failed` (exit code 10) with what is where read back from the
target, and the guard or a retrying restore carries on (pipeline/restore.py, pipeline/guard.py).

Operator controls (controls.json) name their run; a pause holds traffic on stable while it lasts.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from immune_suite.gates.attribution import counter_deltas, judge_attribution
from immune_suite.paths import REPO_ROOT
from immune_suite.pipeline.canary_metrics import judge_step_metrics, with_metrics
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.pipeline.gates import Gates, LoadResult, run_dir
from immune_suite.pipeline.plan import (
    PROMOTED,
    ROLLBACK_FAILED,
    ROLLBACK_STEP,
    TERMINAL,
    TRAFFIC_SPLIT_KINDS,
    Step,
    StepKind,
    build_plan,
)
from immune_suite.pipeline.restore import (
    describe_where,
    move_traffic_to_stable,
    remove_candidate,
    retrying,
    stable_routing,
    where,
)
from immune_suite.pipeline.run_state import RunState, RunStore, StepResult, now_iso
from immune_suite.progress import Progress
from immune_suite.source import export_source, source_tree_of
from immune_suite.stack_config import StackConfig
from immune_suite.state_dir import state_root
from immune_suite.targets.base import Color, Release, Target, TargetError, TrafficState
from immune_suite.verdict import Measurement, Status, Verdict


@dataclass(frozen=True)
class Outcome:
    passed: bool
    verdict: Verdict | None = None
    reason: str | None = None
    exit_code: ExitCode = ExitCode.GATE_FAILED
    suspend: bool = False  # stop the loop without finishing (awaiting approval)


class Suspended(Exception):
    """The run stopped, unfinished and safe, waiting for a person (approval)."""


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Pipeline:
    def __init__(
        self,
        stack: StackConfig,
        target: Target,
        gates: Gates,
        progress: Progress,
        repo: Path = REPO_ROOT,
        poll_s: float = 0.5,
    ) -> None:
        self.stack = stack
        self.target = target
        self.gates = gates
        self.progress = progress
        self.repo = repo
        self.store = RunStore(stack.name)
        self.poll_s = poll_s
        self._stray_noted: set[str] = set()  # controls for other runs already noted as ignored
        self._handlers: dict[StepKind, Callable[[RunState, Step], Outcome]] = {
            StepKind.APPROVAL: self._approval,
            StepKind.SECURITY: self._security,
            StepKind.DEPLOY: self._deploy,
            StepKind.SMOKE: self._smoke,
            StepKind.API_FUZZ: self._api_fuzz,
            StepKind.CANARY: self._canary,
            StepKind.CHAOS: self._chaos,
            StepKind.SWITCH: self._switch,
            StepKind.POST_CHECK: self._post_check,
            StepKind.RETIRE: self._retire,
            StepKind.ROLLBACK: self._rollback,
        }

    # -- starting ----------------------------------------------------------------------------------
    def new_run(self, candidate: Release, kind: str = "promotion", source_commit: str = "") -> RunState:
        self.target.ensure_running()
        snapshot = self.target.snapshot()
        orphaned = self._route_orphaned_split_to_stable(snapshot.traffic)
        if orphaned is not None:
            snapshot = self.target.snapshot()
        traffic = snapshot.traffic or TrafficState(active=Color.GREEN, canary_weight=0)
        stable_dict = snapshot.releases.get(traffic.active.value)
        stable = Release.from_dict(stable_dict) if stable_dict else None
        first = stable is None
        plan = build_plan(self.stack, first_promotion=first, skip_gates=(kind == "rollback"))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        run = RunState(
            # The random part keeps ids unique when the same candidate is promoted twice in a second:
            # controls, records and artifacts are addressed by run id.
            run_id=f"{stamp}-{candidate.digest.split(':')[-1][:8]}-{secrets.token_hex(2)}",
            stack=self.stack.name,
            kind=kind,
            candidate=candidate,
            candidate_color=traffic.active.other,
            stable=stable,
            stable_color=traffic.active,
            first_promotion=first,
            plan=plan,
            current=plan[0].id,
            snapshot=snapshot,
            owner=f"{operator()} pid {os.getpid()}",
            source_commit=source_commit,
        )
        if orphaned is not None:
            run.note("orphaned split routed back to stable before the run", found=orphaned.to_dict())
        run.note(
            "started",
            kind=kind,
            candidate=candidate.version,
            candidate_color=run.candidate_color.value,
            stable=stable.version if stable else None,
        )
        self.store.save(run)
        was = f"{stable.version} on {run.stable_color.value}" if stable else "none, first promotion"
        self.progress(
            f"{kind} {run.run_id}: {candidate.version} -> {run.candidate_color.value} (stable: {was})",
            stage="start",
        )
        return run

    def _route_orphaned_split_to_stable(self, traffic: TrafficState | None) -> TrafficState | None:
        """A split that no run of this state directory owns (a runner killed mid-canary, its journal gone
        with its workspace) put back on stable BEFORE anything is deployed: the new candidate goes to the
        colour that split still sends traffic to, and restoring "the routing the run started from" must not
        bring the split back. Returns the split found, or None when traffic was all on one colour.

        Raises:
            TargetError: the routing read back after the change is not all on the active colour.
        """
        if traffic is None or (traffic.canary_weight == 0 and traffic.baseline_weight == 0):
            return None
        self.progress(
            f"routing is split ({traffic.canary_weight} % on {traffic.active.other.value}, "
            f"{traffic.baseline_weight} % on a baseline) but no run here owns it: "
            f"all traffic back on {traffic.active.value} first",
            stage="start",
        )
        # Routing first (the baseline's share goes with the canary's), then the baseline's pods.
        self.target.set_traffic(traffic.active, 0)
        if self.target.baseline_running():
            self.target.stop_baseline()
        seen = self.target.traffic()
        if seen != TrafficState(traffic.active, 0):
            raise TargetError(f"routing read back as {seen} after routing all to {traffic.active.value}")
        return traffic

    def recover(self, run: RunState, same_candidate: bool) -> None:
        """Take charge of a run whose process died: traffic to stable first, then decide where to resume."""
        step = run.step(run.current)
        self.target.ensure_running()
        run.owner = f"{operator()} pid {os.getpid()}"
        if step.kind in TRAFFIC_SPLIT_KINDS:
            started = time.monotonic()
            self.target.set_traffic(run.stable_color, 0)
            elapsed = time.monotonic() - started
            run.note("recovered: traffic back on stable", interrupted_step=step.id, seconds=round(elapsed, 3))
            self.progress(f"previous run died in {step.id}: all traffic back on {run.stable_color.value}")
        if not same_candidate and step.kind is not StepKind.ROLLBACK:
            run.failure = {
                "step": step.id,
                "reason": "pipeline crashed; superseded by a new candidate",
                "exit_code": int(ExitCode.ABORTED),
            }
            run.result(step.id).status = "failed"
            run.current = ROLLBACK_STEP
        elif step.kind in TRAFFIC_SPLIT_KINDS:
            # The analysis windows before the crash were cut short: redo every traffic step from the first.
            first = next(s for s in run.plan if s.kind in TRAFFIC_SPLIT_KINDS)
            run.current = first.id
            for later in run.plan[run.plan.index(first) :]:
                if later.kind is not StepKind.ROLLBACK:
                    run.steps[later.id] = StepResult(attempts=run.result(later.id).attempts)
            run.note("resumed", from_step=first.id)
        else:
            run.note("resumed", from_step=step.id)
        if run.status != "running":
            run.status = "running"
        self.store.save(run)

    # -- the loop ----------------------------------------------------------------------------------
    def execute(self, run: RunState) -> ExitCode:
        started = time.monotonic()
        try:
            while run.current not in TERMINAL:
                self._obey_controls(run)
                step = run.step(run.current)
                outcome = self._run_step(run, step)
                if outcome.suspend:
                    return ExitCode.AWAITING_APPROVAL
                self._advance(run, step, outcome)
        finally:
            run.metrics["pipeline_wall_s"] = round(
                run.metrics.get("pipeline_wall_s", 0) + time.monotonic() - started, 3
            )
            self.store.save(run)
        run.status = run.current
        run.finished_at = now_iso()
        self.store.save(run)
        # Requests addressed to this run (abort, pause) are spent, and any other is stale: no other run
        # can be unfinished while this one held the lock.
        self.store.clear_controls()
        if run.status == PROMOTED:
            self.progress(f"promoted {run.candidate.version} on {run.candidate_color.value}", stage="done")
            return ExitCode.OK
        failure = run.failure or {}
        if run.status == ROLLBACK_FAILED:
            self.progress(
                f"ROLLBACK FAILED after {failure.get('reason', 'unknown reason')}: "
                f"{failure.get('rollback_error')}; now {describe_where(failure.get('where') or {})}",
                stage="done",
            )
            return ExitCode.ROLLBACK_FAILED
        self.progress(f"rolled back: {failure.get('reason', 'unknown reason')}", stage="done")
        return ExitCode(failure.get("exit_code", ExitCode.GATE_FAILED))

    def _run_step(self, run: RunState, step: Step) -> Outcome:
        result = run.result(step.id)
        result.status, result.started_at, result.attempts = "running", now_iso(), result.attempts + 1
        run.note("step started", step=step.id)
        self.store.save(run)
        self.progress(step.description, stage=step.id)
        rollback = step.kind is StepKind.ROLLBACK
        try:
            return self._handlers[step.kind](run, step)
        except TargetError as error:
            code = ExitCode.ROLLBACK_FAILED if rollback else ExitCode.TARGET_ERROR
            return Outcome(False, reason=f"{step.id}: target error: {error}", exit_code=code)
        except Suspended:
            return Outcome(False, suspend=True)
        except Exception as error:
            code = ExitCode.ROLLBACK_FAILED if rollback else ExitCode.GATE_FAILED
            return Outcome(False, reason=f"{step.id}: {type(error).__name__}: {error}", exit_code=code)

    def _advance(self, run: RunState, step: Step, outcome: Outcome) -> None:
        result = run.result(step.id)
        result.finished_at = now_iso()
        result.status = "passed" if outcome.passed else "failed"
        result.verdict = outcome.verdict.to_dict() if outcome.verdict else None
        result.reason = outcome.reason or (outcome.verdict.summary if outcome.verdict else None)
        if not outcome.passed and step.kind is not StepKind.ROLLBACK and run.failure is None:
            run.failure = {"step": step.id, "reason": result.reason, "exit_code": int(outcome.exit_code)}
        if not outcome.passed and step.kind is StepKind.ROLLBACK:
            # Keep what caused the rollback; add why the rollback failed and where things are now.
            details = outcome.verdict.details if outcome.verdict else {}
            run.failure = {
                **(run.failure or {"step": step.id, "reason": "rollback requested"}),
                "rollback_error": result.reason,
                "where": details.get("where") or where(self.target),
                "exit_code": int(ExitCode.ROLLBACK_FAILED),
            }
        run.current = step.on_pass if outcome.passed else step.on_fail
        run.note("step finished", step=step.id, status=result.status, reason=result.reason)
        self.progress(f"{result.status}: {result.reason or ''}", stage=step.id)
        self.store.save(run)

    def _controls(self, run: RunState) -> dict[str, Any]:
        """The operator requests addressed to this run; any other request is ignored (and noted once)."""
        controls = self.store.controls()
        addressed = controls.get("run_id")
        if controls and addressed != run.run_id:
            key = f"{addressed}@{controls.get('updated_at')}"
            if key not in self._stray_noted:
                self._stray_noted.add(key)
                run.note("ignored a control addressed to another run", control_run=addressed)
                self.progress(f"ignoring a control for run {addressed}: this is run {run.run_id}")
            return {}
        return controls

    def _hold_traffic_on_stable(self, run: RunState) -> TrafficState | None:
        """While paused nobody analyses the canary, so before the switch no user may stay on it:
        move traffic back to stable and return the routing to put back on resume (None: unchanged)."""
        if any(run.result(s.id).status == "passed" for s in run.plan if s.kind is StepKind.SWITCH):
            return None  # after the switch the candidate *is* stable; pausing is not rolling back
        traffic = self.target.traffic()
        if traffic is None or traffic == stable_routing(run):
            return None
        move_traffic_to_stable(self.target, run)
        run.note("traffic", active=run.stable_color.value, canary_weight=0, reason="paused")
        return traffic

    def _obey_controls(self, run: RunState) -> None:
        if run.current == ROLLBACK_STEP:
            return
        controls = self._controls(run)
        paused_noted = False
        held: TrafficState | None = None
        while controls.get("paused") and not controls.get("abort"):
            if not paused_noted:
                try:
                    held = self._hold_traffic_on_stable(run)
                except Exception as error:  # a pause that cannot make traffic safe becomes a rollback
                    self._fail_between_steps(run, f"pause: could not move traffic to stable: {error}")
                    return
                run.note("paused", by=controls.get("by"), traffic_held_on_stable=held is not None)
                self.store.save(run)
                self.progress(
                    f"paused by {controls.get('by')}"
                    + (f"; traffic back on {run.stable_color.value} while paused" if held else "")
                    + "; waiting for `immune-suite resume`"
                )
                paused_noted = True
            time.sleep(self.poll_s)
            controls = self._controls(run)
        if paused_noted:
            if held is not None and not controls.get("abort"):
                try:
                    self.target.set_traffic(held.active, held.canary_weight)
                except Exception as error:
                    self._fail_between_steps(run, f"resume: could not restore routing {held}: {error}")
                    return
                run.note("traffic", **held.to_dict(), reason="resumed: routing as before the pause")
            run.note("resumed after pause")
        if controls.get("abort"):
            reason = f"aborted by {controls.get('by', 'an operator')}: {controls.get('abort')}"
            run.failure = {"step": run.current, "reason": reason, "exit_code": int(ExitCode.ABORTED)}
            run.result(run.current).status = "skipped"
            run.note("abort requested", reason=reason)
            run.current = ROLLBACK_STEP
            self.store.clear_controls()
            self.store.save(run)

    def _fail_between_steps(self, run: RunState, reason: str) -> None:
        run.failure = {"step": run.current, "reason": reason, "exit_code": int(ExitCode.TARGET_ERROR)}
        run.note("failed between steps", reason=reason)
        run.current = ROLLBACK_STEP
        self.store.save(run)

    def _abort_requested(self, run: RunState) -> bool:
        return bool(self._controls(run).get("abort"))

    # -- step handlers -----------------------------------------------------------------------------
    def _artifacts(self, run: RunState, name: str) -> Path:
        path = run_dir(state_root(), run.stack, run.run_id) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _approval(self, run: RunState, step: Step) -> Outcome:
        if run.approvals:
            last = run.approvals[-1]
            verdict = Verdict("approval", Status.PASS, f"approved by {last['by']} at {last['at']}")
            return Outcome(True, verdict)
        run.status = "awaiting_approval"
        run.result(step.id).status = "waiting"
        run.note("awaiting approval")
        self.store.save(run)
        self.progress(
            "waiting for approval: `immune-suite approve --stack "
            f"{run.stack}` then `immune-suite resume --stack {run.stack}`",
            stage=step.id,
        )
        raise Suspended

    def _security(self, run: RunState, step: Step) -> Outcome:
        source = self._artifacts(run, "source")
        if not any(source.iterdir()):
            source.rmdir()
            export_source(self.repo, source_tree_of(self.repo, run.candidate), source)
        verdict = self.gates.security(source, self._artifacts(run, "security"), None, None, self.progress)
        return Outcome(verdict.passed, verdict)

    def _deploy(self, run: RunState, step: Step) -> Outcome:
        env = {**self.stack.candidate_env, **run.candidate.env}
        release = Release(run.candidate.version, run.candidate.ref, run.candidate.digest, env)
        health = self.target.deploy(run.candidate_color, release, step.params.get("replicas"))
        self._start_baseline(run, fresh=True)  # same moment, same launch path, as the canary's instances
        measurements = [
            Measurement(
                "ready_replicas", health.ready_replicas, health.desired_replicas, ">=", health.healthy
            ),
        ]
        verdict = Verdict(
            "deploy",
            Status.PASS if health.healthy else Status.FAIL,
            f"{release.version} on {run.candidate_color.value}: {health.ready_replicas}/"
            f"{health.desired_replicas} replicas ready",
            measurements,
            details={"health": health.to_dict()},
        )
        return Outcome(health.healthy, verdict, exit_code=ExitCode.TARGET_ERROR)

    def _smoke(self, run: RunState, step: Step) -> Outcome:
        verdict = self.gates.smoke(
            self.target.endpoints().preview_url,
            self.target.api_token("smoke") or "",
            run.candidate_color,
            run.candidate,
            float(step.params.get("timeout_s", 30)),
            self.progress,
            attribution=self.target.attribution(),
        )
        return Outcome(verdict.passed, verdict)

    def _api_fuzz(self, run: RunState, step: Step) -> Outcome:
        if self.gates.fuzz is None:
            return Outcome(False, reason="no API fuzzing gate configured")
        url, out = self.target.endpoints().preview_url, self._artifacts(run, "api-fuzz")
        verdict = self.gates.fuzz(url, self.target.api_token("fuzz"), out, self.progress)
        return Outcome(verdict.passed, verdict)

    def _canary(self, run: RunState, step: Step) -> Outcome:
        percent = int(step.params["percent"])
        canary_steps = [s.id for s in run.plan if s.kind is StepKind.CANARY]
        self._start_baseline(run, fresh=False)  # a resumed run may have lost it
        routing = self.target.set_traffic(run.stable_color, percent)
        run.note(
            "traffic",
            active=run.stable_color.value,
            canary_weight=percent,
            baseline_weight=routing.baseline_weight,
        )
        self.store.save(run)
        endpoints = self.target.endpoints()
        token = self.target.api_token("load") or ""
        duration = float(step.params["duration_s"])
        shape = str(step.params.get("shape", "baseline"))
        # At 100% a second load on the baseline (or, without one, the stable) endpoint is the
        # comparison (pipeline/canary.py); each then runs at half rate, so every replica sees the
        # load it saw at 50% and the machine (or cluster) carries the same total as in every other step.
        rps_scale = self.stack.canary.rps_scale / (2 if percent == 100 else 1)
        attribution = self.target.attribution()
        env = {"IMMUNE_LOAD_RPS_SCALE": str(rps_scale), **(attribution.to_env() if attribution else {})}
        second_url = (
            endpoints.baseline_url if self.target.baseline_running() else None
        ) or endpoints.stable_url
        out = self._artifacts(run, f"{step.id}/attempt-{run.result(step.id).attempts}")
        counters = getattr(self.target, "ingress_counters", None)
        counters_before = counters() if counters else None

        def load(url: str, directory: Path) -> LoadResult:
            return self.gates.load(url, token, directory, shape, duration, self.progress, extra_env=env)

        def back_to_stable() -> None:
            self.target.set_traffic(run.stable_color, 0)
            run.note("traffic", active=run.stable_color.value, canary_weight=0, reason="interim look failed")

        step_started = time.time()  # the metric checks' window starts with the traffic shift
        # Imported here: the statistics (scipy) cost seconds that every other command would pay.
        from immune_suite.pipeline.canary import run_canary_step

        result = run_canary_step(
            percent,
            run.candidate_color,
            run.stable_color,
            self.stack,
            load,
            (endpoints.ingress_url, second_url),
            # One directory per attempt: a load process orphaned by a crash cannot write into a rerun's.
            out,
            back_to_stable,
            self.progress,
            look_every_s=self.poll_s * 2,
            # Load shapes ramp up over their first fifth (immune_load/shapes.py); compare steady load only.
            ramp_s=duration / 5,
        )
        if attribution is not None:
            # Every request counted by who the ingress says served it; too many it could not name fail.
            counters_after = counters() if counters and counters_before is not None else None
            deltas = (
                counter_deltas(counters_before, counters_after)
                if counters_before is not None and counters_after is not None
                else None
            )
            verdict = judge_attribution(result.verdict, sorted(out.rglob("samples.jsonl")), deltas)
            result = replace(result, verdict=verdict)
        if self.stack.metrics is not None:
            # The metrics system's view of the candidate over the whole step (immune_suite/metrics/).
            metrics = None
            if result.verdict.passed:
                metrics = judge_step_metrics(
                    self.target,
                    self.stack.metrics,
                    run.candidate_color,
                    run.candidate,
                    step_started,
                    time.time(),
                )
                self.progress(metrics.summary, stage=f"canary-{percent}")
            result = replace(result, verdict=with_metrics(result.verdict, metrics))
        if result.verdict.passed and step.id == canary_steps[-1]:
            self._stop_baseline(run, "canary finished")
        if not result.verdict.passed:
            run.metrics["canary_failed_at_unix"] = result.early_stop_at or time.time()
            if result.early_stop_at is not None:
                run.metrics["traffic_back_at_unix"] = result.early_stop_at
            if result.first_breach_at is not None:
                run.metrics["first_slo_breach_at_unix"] = result.first_breach_at
        return Outcome(result.verdict.passed, result.verdict)

    def _chaos(self, run: RunState, step: Step) -> Outcome:
        config = self.target.chaos_config(run.candidate_color)
        experiments = list(step.params.get("experiments", []))
        verdict = self.gates.chaos(config, self._artifacts(run, "chaos"), experiments, self.progress)
        return Outcome(verdict.passed, verdict)

    def _switch(self, run: RunState, step: Step) -> Outcome:
        self._stop_baseline(run, "canary finished")
        routing = self.target.set_traffic(run.candidate_color, 0)
        run.note("traffic", active=routing.active.value, canary_weight=0)
        verdict = Verdict("switch", Status.PASS, f"{run.candidate_color.value} is now the active colour")
        return Outcome(True, verdict)

    def _post_check(self, run: RunState, step: Step) -> Outcome:
        verdict = self.gates.post_check(
            self.target.endpoints().stable_url,
            run.candidate_color,
            run.candidate,
            int(step.params.get("requests", 20)),
            self.progress,
            attribution=self.target.attribution(),
        )
        return Outcome(verdict.passed, verdict)

    def _retire(self, run: RunState, step: Step) -> Outcome:
        deadline = time.monotonic() + float(step.params.get("delay_s", 0))
        while time.monotonic() < deadline:
            if self._abort_requested(run):
                return Outcome(False, reason="aborted during the rollback window", exit_code=ExitCode.ABORTED)
            time.sleep(min(self.poll_s, max(deadline - time.monotonic(), 0)))
        self.target.scale_down(run.stable_color)
        verdict = Verdict("retire", Status.PASS, f"old colour {run.stable_color.value} scaled away")
        return Outcome(True, verdict)

    def _rollback(self, run: RunState, step: Step) -> Outcome:
        """Traffic back as before the run (read back to confirm), then colours as before, each retried
        with exponential backoff within the step's `retry_s`; past that the run ends `rollback_failed`."""
        started = time.monotonic()
        budget = float(step.params.get("retry_s", self.stack.rollback_retry_s))
        routing = stable_routing(run)
        try:
            retrying(budget, self.progress, "traffic back to stable")(
                lambda: move_traffic_to_stable(self.target, run)
            )
        except Exception as error:
            return self._rollback_failed(run, f"traffic not back on stable: {type(error).__name__}: {error}")
        # An interim canary look may already have moved traffic back; that moment is what users saw.
        back_on_stable = min(time.time(), run.metrics.get("traffic_back_at_unix", time.time()))
        run.metrics["rollback_traffic_s"] = round(time.monotonic() - started, 3)
        if "canary_failed_at_unix" in run.metrics:
            run.metrics["verdict_to_stable_s"] = round(
                back_on_stable - run.metrics["canary_failed_at_unix"], 3
            )
        if "first_slo_breach_at_unix" in run.metrics:
            run.metrics["slo_breach_to_stable_s"] = round(
                back_on_stable - run.metrics["first_slo_breach_at_unix"], 3
            )
        run.note("traffic", active=routing.active.value, canary_weight=routing.canary_weight)
        self.store.save(run)
        self.progress(f"traffic back on {routing.active.value} in {run.metrics['rollback_traffic_s']}s")
        remaining = max(budget - (time.monotonic() - started), 0.0)
        try:
            retrying(remaining, self.progress, "candidate away")(lambda: remove_candidate(self.target, run))
        except Exception as error:
            return self._rollback_failed(
                run, f"traffic on stable, candidate not scaled away: {type(error).__name__}: {error}"
            )
        try:
            self._stop_baseline(run, "rolled back")
        except Exception as error:  # out of traffic already (the routing above); the next run stops it
            run.note("baseline not stopped", error=f"{type(error).__name__}: {error}")
        run.metrics["rollback_total_s"] = round(time.monotonic() - started, 3)
        verdict = Verdict(
            "rollback",
            Status.PASS,
            f"traffic on {routing.active.value}; {run.candidate_color.value} scaled away",
            [Measurement("rollback_traffic_s", run.metrics["rollback_traffic_s"], None, "info", True, "s")],
        )
        return Outcome(True, verdict)

    def _rollback_failed(self, run: RunState, reason: str) -> Outcome:
        """The target refused past the retry budget: say what is where, as the target reports it."""
        report = where(self.target)
        verdict = Verdict(
            "rollback",
            Status.FAIL,
            f"rollback failed: {reason}; now {describe_where(report)}",
            details={"where": report},
        )
        return Outcome(False, verdict, reason=reason, exit_code=ExitCode.ROLLBACK_FAILED)

    # -- baseline (Kayenta): fresh stable instances beside the canary, for as long as it lasts ---------
    def _start_baseline(self, run: RunState, fresh: bool) -> None:
        if run.stable is None or not any(s.kind is StepKind.CANARY for s in run.plan):
            return
        if not fresh and self.target.baseline_running():
            return
        try:
            self.target.start_baseline(run.stable, fresh=fresh)
        except NotImplementedError as error:
            run.note("no fresh baseline: canary compared with stable", reason=str(error))
            return
        run.note("baseline started", release=run.stable.version, fresh=fresh)
        self.progress(
            f"baseline: fresh instances of {run.stable.version} beside the canary", stage="baseline"
        )

    def _stop_baseline(self, run: RunState, reason: str) -> None:
        running = self.target.baseline_running()
        self.target.stop_baseline()  # always: idempotent, and leftovers of a crashed run go too
        if running:
            run.note("baseline stopped", reason=reason)


def describe(run: RunState) -> dict[str, Any]:
    """A short status view of a run for `immune-suite status`."""
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "status": run.status,
        "current": run.current,
        "candidate": run.candidate.version,
        "candidate_color": run.candidate_color.value,
        "stable": run.stable.version if run.stable else None,
        "stable_color": run.stable_color.value,
        "steps": {k: v.status for k, v in run.steps.items()},
        "failure": run.failure,
        "record": run.record_path,
        "finished": run.finished,
        "settled_at": run.settled_at,
    }
