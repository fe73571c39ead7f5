"""`immune-suite`: promote the service through the gates, and inspect, steer and audit promotions.

Exit codes are listed in `immune_suite.pipeline.exit_codes.ExitCode` and docs/pipeline.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from immune_suite.paths import REPO_ROOT
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.pipeline.gates import Gates, default_gates
from immune_suite.pipeline.guard import guard_forever, restore_until_settled, unsettled
from immune_suite.pipeline.plan import build_plan, render_plan
from immune_suite.pipeline.restore import describe_where
from immune_suite.pipeline.run_state import LockHeld, RunState, RunStore, StackLock, now_iso
from immune_suite.pipeline.runner import Pipeline, describe, operator
from immune_suite.progress import ConsoleProgress, JsonLinesProgress, Progress
from immune_suite.record import record_index, resolve_record, write_signed_record
from immune_suite.signing import (
    SigningKeyError,
    load_public_key,
    signing_key_for,
    trusted_key_for,
    verify_artifacts,
    verify_record,
)
from immune_suite.source import SourceTree, resolve_source
from immune_suite.stack_config import StackConfig, load_stack
from immune_suite.targets.base import Color, Release, Target, TargetError
from immune_suite.targets.factory import make_target

LOCK_WAIT_S = 3.0  # long enough for the guard's brief hold, short enough to report a live pipeline

EPILOG = """exit codes: 0 ok/promoted, 1 error, 2 usage, 3 gate failed (rolled back), 4 aborted (rolled back),
5 awaiting approval, 6 another run holds the lock, 7 verification failed, 8 target error (rolled back),
9 nothing to do, 10 ROLLBACK FAILED (traffic may be split; see `status`).
State: ${IMMUNE_STATE_DIR:-~/.local/state/active-immune-core}."""


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(human)


def _progress(args: argparse.Namespace) -> Progress:
    return JsonLinesProgress() if args.json else ConsoleProgress()


class Session:
    """What a command needs for one stack; built lazily so `plan` and `verify` start nothing."""

    gates_factory: Callable[[], Gates] = staticmethod(default_gates)

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stack: StackConfig = load_stack(args.stack)
        self.store = RunStore(self.stack.name)
        self.repo = Path(getattr(args, "repo", None) or REPO_ROOT).resolve()
        self._target: Target | None = None

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = make_target(self.stack, self.repo)
        return self._target

    def pipeline(self) -> Pipeline:
        gates = Session.gates_factory()
        return Pipeline(self.stack, self.target, gates, _progress(self.args), repo=self.repo)

    def require_signing_key(self) -> None:
        """Refuse a run whose record could not be signed before it changes anything (SigningKeyError)."""
        signing_key_for(self.stack.name, self.stack.signing_key_source, dict(os.environ))

    @property
    def resident_guard(self) -> bool:
        """The local stack runs `immune-suite guard` under supervisord; a cluster has none of ours."""
        return self.stack.target == "local"

    def finish(self, run: RunState, code: ExitCode) -> ExitCode:
        """Sign the record and write the report once a run has ended (promoted or rolled back).

        After a failed rollback, where no guard runs beside the stack, keep restoring in the foreground
        (exponential backoff) until traffic is on stable: nobody else would. The exit code stays 10.
        """
        payload: dict[str, Any] = {"exit_code": int(code), "run": describe(run), "metrics": run.metrics}
        if run.finished:
            record = write_signed_record(run, self.stack, self.target.name)
            from immune_suite.report import write_report  # matplotlib: only where a report is written

            report = write_report(record)
            run.record_path = str(record)
            self.store.save(run)
            payload |= {"record": str(record), "report": str(report)}
        human = f"{run.status}: {run.candidate.version} ({run.run_id}) exit {int(code)}"
        if run.failure:
            human += f"\nreason: {run.failure.get('reason')}"
        if unsettled(run):
            failure = run.failure or {}
            human += (
                f"\nROLLBACK FAILED: {failure.get('rollback_error')}"
                f"\nnow: {describe_where(failure.get('where') or {})}"
            )
            if self.resident_guard:
                human += "\nthe stack's guard keeps restoring stable; `immune-suite status` shows when it has"
        if run.finished:
            human += f"\nrecord: {payload['record']}\nreport: {payload['report']}"
        _emit(self.args, payload, human)
        if unsettled(run) and not self.resident_guard:
            restore_until_settled(self.store, self.target, run, _progress(self.args))
        return code

    def settle_previous(self, run: RunState) -> bool:
        """Finish an earlier failed rollback before anything new starts; True when traffic is on stable."""
        if not unsettled(run):
            return True
        budget = self.stack.rollback_retry_s
        return restore_until_settled(self.store, self.target, run, _progress(self.args), budget_s=budget)


def addressed_run(args: argparse.Namespace, store: RunStore, verb: str) -> RunState | None:
    """The unfinished run a control is for: `--run ID` must name it; without it, the one now unfinished.

    Prints why and returns None when there is none (or `--run` names another run): a control never
    lands on a run it was not meant for.
    """
    run = store.load()
    wanted = getattr(args, "run", None)
    if run is None or run.finished:
        last = f" (last run {run.run_id} is {run.status})" if run else ""
        _emit(args, {verb: None, "run_id": wanted}, f"no unfinished run to {verb}{last}")
        return None
    if wanted and wanted != run.run_id:
        _emit(
            args,
            {verb: None, "run_id": wanted, "unfinished_run": run.run_id},
            f"refused: run {wanted} is not the unfinished run (that is {run.run_id})",
        )
        return None
    return run


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("IMMUNE_"):
            raise ValueError(f"--candidate-env expects IMMUNE_NAME=value, got {pair!r}")
        env[key] = value
    return env


IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _candidate(source: SourceTree, args: argparse.Namespace, stack: StackConfig) -> Release:
    """The release to promote. On image-based stacks, `--image-digest` (default $IMMUNE_IMAGE_DIGEST)
    names the image CI built once from this source, so staging and prod promote that exact digest. The
    local stack runs the source tree itself, named by its git tree hash."""
    env = _parse_env(args.candidate_env)
    if stack.target == "local":
        if args.image_digest:
            raise ValueError("--image-digest is for image-based stacks; the local stack runs the source tree")
        return Release(source.version, source.ref, source.digest, env)
    digest = args.image_digest or os.environ.get("IMMUNE_IMAGE_DIGEST") or source.digest
    if digest != source.digest and not IMAGE_DIGEST.match(digest):
        raise ValueError(f"--image-digest expects sha256:<64 hex digits>, got {digest!r}")
    return Release(source.version, source.ref, digest, env)


def _approval(by: str | None, via: str) -> dict[str, str]:
    return {"by": by or operator(), "at": now_iso(), "via": via}


# -- commands ----------------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> ExitCode:
    stack = load_stack(args.stack)
    first = args.first
    if first is None:
        # What the next promotion would do: first promotion when no colour serves a release yet.
        snapshot = make_target(stack).snapshot()
        active = snapshot.traffic.active.value if snapshot.traffic else None
        first = not (active and snapshot.releases.get(active))
    steps = build_plan(stack, first_promotion=first)
    _emit(
        args,
        {"stack": stack.name, "first_promotion": first, "steps": [s.to_dict() for s in steps]},
        f"stack {stack.name} ({'first promotion' if first else 'with a stable'}):\n{render_plan(steps)}",
    )
    return ExitCode.OK


def cmd_promote(args: argparse.Namespace) -> ExitCode:
    session = Session(args)
    session.require_signing_key()
    with StackLock(session.stack.name, wait_s=LOCK_WAIT_S):
        source = resolve_source(session.repo, args.ref)
        candidate = _candidate(source, args, session.stack)
        pipeline = session.pipeline()
        unfinished = session.store.load()
        if unfinished is not None and not session.settle_previous(unfinished):
            _emit(
                args,
                {"exit_code": int(ExitCode.ROLLBACK_FAILED), "run": describe(unfinished)},
                f"refused: the rollback of {unfinished.run_id} has not completed (traffic may be split); "
                "see `immune-suite status`",
            )
            return ExitCode.ROLLBACK_FAILED
        if unfinished is not None and unfinished.finished:
            unfinished = None
        if unfinished is not None:
            same = unfinished.candidate == candidate
            pipeline.recover(unfinished, same_candidate=same)
            if not same:
                session.finish(unfinished, pipeline.execute(unfinished))
                unfinished = None
        run = unfinished or pipeline.new_run(candidate, source_commit=source.commit)
        if args.approve:
            run.approvals.append(_approval(args.by, "promote --approve"))
            session.store.save(run)
        code = pipeline.execute(run)
        return session.finish(run, code)


def cmd_resume(args: argparse.Namespace) -> ExitCode:
    session = Session(args)
    session.require_signing_key()
    if args.run and addressed_run(args, session.store, "resume") is None:
        return ExitCode.NOTHING_TO_DO
    current = session.store.load()
    if current is not None and session.store.controls(current.run_id).get("paused"):
        session.store.set_control(current.run_id, paused=False, by=args.by or operator())
    try:
        lock = StackLock(session.stack.name, wait_s=LOCK_WAIT_S).acquire()
    except LockHeld:
        _emit(args, {"resumed": True}, "resume sent to the running pipeline")
        return ExitCode.OK
    try:
        run = session.store.load()
        if run is None or run.finished:
            _emit(args, {"resumed": False}, "no unfinished run to resume")
            return ExitCode.NOTHING_TO_DO
        pipeline = session.pipeline()
        pipeline.recover(run, same_candidate=True)
        return session.finish(run, pipeline.execute(run))
    finally:
        lock.release()


def cmd_pause(args: argparse.Namespace) -> ExitCode:
    store = RunStore(load_stack(args.stack).name)
    run = addressed_run(args, store, "pause")
    if run is None:
        return ExitCode.NOTHING_TO_DO
    store.set_control(run.run_id, paused=True, by=args.by or operator())
    _emit(
        args,
        {"paused": True, "run_id": run.run_id},
        f"pause requested for {run.run_id}: the step in progress finishes (a canary keeps being analysed "
        "and rolls back on failure), then traffic goes back to stable until `immune-suite resume`",
    )
    return ExitCode.OK


def cmd_approve(args: argparse.Namespace) -> ExitCode:
    session = Session(args)
    with StackLock(session.stack.name, wait_s=LOCK_WAIT_S):
        run = session.store.load()
        if run is None or run.finished:
            _emit(args, {"approved": False}, "no unfinished run to approve")
            return ExitCode.NOTHING_TO_DO
        approval = _approval(args.by, "immune-suite approve")
        run.approvals.append(approval)
        run.note("approved", by=approval["by"])
        session.store.save(run)
    _emit(
        args,
        {"approved": True, **approval},
        f"approved by {approval['by']}; continue with `immune-suite resume`",
    )
    return ExitCode.OK


def cmd_abort(args: argparse.Namespace) -> ExitCode:
    session = Session(args)
    session.require_signing_key()
    by = args.by or operator()
    try:
        lock = StackLock(session.stack.name, wait_s=LOCK_WAIT_S).acquire()
    except LockHeld:
        running = addressed_run(args, session.store, "abort")
        if running is None:
            return ExitCode.NOTHING_TO_DO
        session.store.set_control(running.run_id, abort=args.reason, by=by)
        _emit(
            args,
            {"abort": "requested", "run_id": running.run_id},
            f"abort sent to {running.run_id}: the running pipeline rolls back before its next step",
        )
        return ExitCode.OK
    try:
        last = session.store.load()
        if unsettled(last) and (not args.run or last is None or args.run == last.run_id):
            assert last is not None
            # Its rollback failed and traffic may be split: aborting it means restoring stable now.
            if session.settle_previous(last):
                _emit(args, {"abort": "settled", "run_id": last.run_id}, f"{last.run_id}: traffic on stable")
                return ExitCode.OK
            _emit(
                args,
                {"abort": "unsettled", "run_id": last.run_id},
                f"{last.run_id}: the target still refuses the restore; see `immune-suite status`",
            )
            return ExitCode.ROLLBACK_FAILED
        run = addressed_run(args, session.store, "abort")
        if run is None:
            return ExitCode.NOTHING_TO_DO
        pipeline = session.pipeline()
        pipeline.recover(run, same_candidate=True)
        session.store.set_control(run.run_id, abort=args.reason, by=by)
        return session.finish(run, pipeline.execute(run))
    finally:
        lock.release()


def cmd_rollback(args: argparse.Namespace) -> ExitCode:
    """Re-promote the release of the promotion before the current one (gates already passed)."""
    session = Session(args)
    session.require_signing_key()
    found = _previous_release(session)
    if isinstance(found, str):
        _emit(args, {"rollback": None}, found)
        return ExitCode.NOTHING_TO_DO
    release, source = found
    with StackLock(session.stack.name, wait_s=LOCK_WAIT_S):
        existing = session.store.load()
        if existing is not None and not existing.finished:
            _emit(args, {"rollback": None}, f"run {existing.run_id} is unfinished: abort or resume it first")
            return ExitCode.LOCKED
        pipeline = session.pipeline()
        run = pipeline.new_run(release, kind="rollback")
        run.note("rollback to", **source)
        return session.finish(run, pipeline.execute(run))


def _previous_release(session: Session) -> tuple[Release, dict[str, str]] | str:
    """The release `rollback` goes back to and where that was found, or why there is none.

    First this state dir's records: the last promotion before the current one whose digest differs.
    Without two such records (a CI runner's state dir starts empty), the stack's own: the release it
    recorded on the colour not serving (`Target.recorded_release`), when it differs from the active one's.
    """
    promoted = [entry for entry in record_index(session.stack.name) if entry["outcome"] == "promoted"]
    if len(promoted) >= 2:
        current = promoted[-1]["candidate"]
        earlier = next(
            (e for e in reversed(promoted[:-1]) if e["candidate"]["digest"] != current["digest"]), None
        )
        if earlier is None:
            return "every earlier promotion shipped the same digest"
        return Release.from_dict(earlier["candidate"]), {"record": str(earlier["run_id"])}
    traffic = session.target.traffic()
    if traffic is None:
        return "no earlier promoted release to roll back to (nothing deployed)"
    active = session.target.recorded_release(traffic.active)
    idle = session.target.recorded_release(traffic.active.other)
    if active is None or idle is None:
        return "no earlier promoted release to roll back to (no record here, none on the stack's idle colour)"
    if idle.digest == active.digest:
        idle_colour = traffic.active.other.value
        return f"the stack's idle colour {idle_colour} recorded the serving digest: nothing to go back to"
    return idle, {"stack_record": traffic.active.other.value, "version": idle.version}


def cmd_status(args: argparse.Namespace) -> ExitCode:
    session = Session(args)
    run = session.store.load()
    target = session.target
    traffic = target.traffic()
    in_charge = StackLock(session.stack.name).is_held_elsewhere()
    payload: dict[str, Any] = {
        "stack": session.stack.name,
        "run": describe(run) if run else None,
        "pipeline_running": in_charge,
        "controls": session.store.controls(),
        "traffic": traffic.to_dict() if traffic else None,
        "colors": {c.value: target.health(c).to_dict() for c in Color},
        "endpoints": target.endpoints().to_dict(),
    }
    lines = [f"stack {session.stack.name}: pipeline {'RUNNING' if in_charge else 'idle'}"]
    if traffic:
        lines.append(f"traffic: active {traffic.active.value}, {traffic.canary_weight}% to the other colour")
    for color in Color:
        health = payload["colors"][color.value]
        release = health.get("release") or {}
        lines.append(
            f"  {color.value}: {release.get('version', '-')}"
            f" ready {health['ready_replicas']}/{health['desired_replicas']}"
        )
    if run:
        lines.append(
            (
                f"last run {run.run_id}: {run.status}"
                if run.finished
                else f"run {run.run_id}: {run.status} at {run.current}"
            )
            + (f" ({run.failure.get('reason')})" if run.failure else "")
        )
        if not run.finished and not in_charge:
            lines.append("  nobody is in charge of this run: `immune-suite resume` or `abort` takes over")
        if run.status == "rollback_failed":
            failure = run.failure or {}
            lines.append(f"  ROLLBACK FAILED: {failure.get('rollback_error')}")
            if run.settled_at:
                lines.append(f"  settled at {run.settled_at}: traffic back on stable")
            else:
                attempts = failure.get("restore_attempts", 0)
                lines.append(
                    f"  NOT settled: traffic may be split ({attempts} restore attempt(s) since; last error: "
                    f"{failure.get('last_restore_error', '-')})"
                )
    controls = payload["controls"]
    if controls:
        stray = not run or controls.get("run_id") != run.run_id or run.finished
        wanted = ", ".join(k for k in ("paused", "abort") if controls.get(k))
        lines.append(
            f"pending control for run {controls.get('run_id')}: {wanted or 'none'} by {controls.get('by')}"
            + (" (ignored: not the unfinished run)" if stray else "")
        )
    _emit(args, payload, "\n".join(lines))
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> ExitCode:
    path = resolve_record(args.record, args.stack)
    record = json.loads(path.read_text(encoding="utf-8"))
    trusted = load_public_key(Path(args.public_key)) if args.public_key else trusted_key_for(record)
    result = verify_record(record, trusted)
    problems = verify_artifacts(record) if args.artifacts else []
    valid = result.valid and not problems
    _emit(
        args,
        {"record": str(path), "valid": valid, "reason": result.reason, "artifact_problems": problems},
        f"{path}: {'VALID' if valid else 'INVALID'} - {result.reason}"
        + "".join(f"\n  {p}" for p in problems),
    )
    return ExitCode.OK if valid else ExitCode.VERIFY_FAILED


def cmd_report(args: argparse.Namespace) -> ExitCode:
    path = resolve_record(args.record, args.stack)
    from immune_suite.report import write_report

    out = write_report(path, Path(args.out) if args.out else None)
    _emit(args, {"report": str(out)}, str(out))
    return ExitCode.OK


def cmd_down(args: argparse.Namespace) -> ExitCode:
    session = Session(args)
    with StackLock(session.stack.name, wait_s=LOCK_WAIT_S):
        shutdown = getattr(session.target, "shutdown", None)
        if shutdown is None:
            _emit(args, {"down": False}, f"target {session.target.name} has nothing to stop")
            return ExitCode.NOTHING_TO_DO
        shutdown()
    _emit(args, {"down": True}, f"stopped the {session.stack.name} stack's processes")
    return ExitCode.OK


def cmd_recover(args: argparse.Namespace) -> ExitCode:
    """A stack whose `pulumi up` was killed (its runner died, a timeout): cancel, clear, refresh.

    Taken under the stack's lock, so never while a pipeline of ours runs. An interrupted pipeline run is
    continued by `resume` afterwards; this only repairs the stack itself.
    """
    session = Session(args)
    with StackLock(session.stack.name, wait_s=LOCK_WAIT_S):
        recover_stack = getattr(session.target, "recover_stack", None)
        if recover_stack is None:
            _emit(
                args,
                {"recovered": False},
                f"target {session.target.name} has no infrastructure stack to recover",
            )
            return ExitCode.NOTHING_TO_DO
        report: dict[str, Any] = recover_stack()
    _emit(args, {"recovered": True, **report}, f"stack {session.stack.name} recovered: {report}")
    return ExitCode.OK


def cmd_guard(args: argparse.Namespace) -> ExitCode:
    stack = load_stack(args.stack)
    guard_forever(stack.name, lambda: make_target(stack), ConsoleProgress(prefix="guard: "), args.interval)
    return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="immune-suite",
        description="Promote Active Immune Core through security, canary and chaos gates, or roll back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        help="machine-readable result on stdout; progress goes to stderr as JSON lines",
    )
    stack = argparse.ArgumentParser(add_help=False)
    stack.add_argument(
        "--stack", default="local", help="stack name (stacks/<name>.yaml) or a YAML path (default: local)"
    )
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--by", help="who does this (default: user@host)")
    who.add_argument("--repo", help="git checkout candidates come from (default: this repository)")
    target_run = argparse.ArgumentParser(add_help=False)
    target_run.add_argument(
        "--run",
        metavar="RUN_ID",
        help="the run this is for (as `status` shows it); refused if that is not the unfinished run "
        "(default: whichever run is unfinished now)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        handler: Callable[[argparse.Namespace], ExitCode],
        help_text: str,
        parents: list[argparse.ArgumentParser],
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(
            name, help=help_text, description=help_text, parents=[common, *parents], epilog=EPILOG
        )
        command.set_defaults(handler=handler)
        return command

    plan = add("plan", cmd_plan, "print the promotion state machine: steps and transitions", [stack])
    which = plan.add_mutually_exclusive_group()
    which.add_argument("--first", action="store_true", default=None, help="show the first-promotion plan")
    which.add_argument(
        "--with-stable",
        dest="first",
        action="store_false",
        help="show the plan of a promotion that has a stable release (the canary steps); "
        "default: whichever the target's live state calls for",
    )
    promote = add(
        "promote", cmd_promote, "promote the working tree (or --ref) through every gate", [stack, who]
    )
    promote.add_argument("--ref", help="git ref to promote instead of the working tree")
    promote.add_argument(
        "--image-digest",
        metavar="sha256:HEX",
        help="the image built from this source, promoted as is to image-based stacks "
        "(default: $IMMUNE_IMAGE_DIGEST; the local stack runs the source tree itself)",
    )
    promote.add_argument(
        "--approve", action="store_true", help="give the manual approval a stack may require"
    )
    promote.add_argument(
        "--candidate-env",
        action="append",
        default=[],
        metavar="IMMUNE_X=V",
        help="extra setting for the candidate only, e.g. IMMUNE_FAULT_LATENCY_MS=400 (repeatable)",
    )
    add("status", cmd_status, "show the current run, traffic split and colour health", [stack])
    abort = add(
        "abort",
        cmd_abort,
        "abort the current run: traffic back to stable, candidate away",
        [stack, who, target_run],
    )
    abort.add_argument("--reason", default="operator abort", help="recorded in the promotion record")
    add("rollback", cmd_rollback, "re-promote the release of the previous successful record", [stack, who])
    add(
        "pause",
        cmd_pause,
        "pause the running pipeline after its current step; traffic waits on stable",
        [stack, who, target_run],
    )
    add("resume", cmd_resume, "resume a paused, approved or interrupted run", [stack, who, target_run])
    add("approve", cmd_approve, "approve the run waiting at the approval step", [stack, who])
    verify = add("verify", cmd_verify, "verify a promotion record's Ed25519 signature", [])
    verify.add_argument("record", help="record path, run id or 'latest' (with --stack)")
    verify.add_argument("--stack", help="stack for run ids / latest")
    verify.add_argument(
        "--public-key",
        help="trusted public key PEM (default: the committed stacks/keys/<record's stack>.pub, "
        "else the state dir's key)",
    )
    verify.add_argument("--artifacts", action="store_true", help="also re-hash artifacts that still exist")
    report = add("report", cmd_report, "write the HTML report of a promotion record", [])
    report.add_argument("record", help="record path, run id or 'latest' (with --stack)")
    report.add_argument("--stack", help="stack for run ids / latest")
    report.add_argument("--out", help="output path (default: next to the record)")
    guard = add(
        "guard", cmd_guard, "dead man's switch: put traffic back on stable when the pipeline dies", [stack]
    )
    guard.add_argument("--interval", type=float, default=1.0, help="seconds between checks")
    add("down", cmd_down, "stop the local stack's processes (supervisord, HAProxy, replicas)", [stack])
    add(
        "recover",
        cmd_recover,
        "after a killed `pulumi up`: remove the stack's lock, drop pending operations, refresh (Kubernetes)",
        [stack],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except LockHeld as error:
        print(f"immune-suite: {error}", file=sys.stderr)
        return int(ExitCode.LOCKED)
    except (FileNotFoundError, ValueError, SigningKeyError) as error:
        print(f"immune-suite: {error}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except TargetError as error:
        # The target could not be brought up or changed (e.g. the local stack's ports are taken): a
        # target failure, said in one line, not a traceback.
        print(f"immune-suite: target error: {error}", file=sys.stderr)
        return int(ExitCode.TARGET_ERROR)


if __name__ == "__main__":
    sys.exit(main())
