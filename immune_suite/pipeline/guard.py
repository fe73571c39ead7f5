"""The dead man's switch: nobody in charge of split traffic means traffic goes back to stable.

Runs beside the stack (under supervisord on the local stack). Once a second it looks at the
stack's run and acts, under the stack's lock (so never against a live pipeline), in two cases:

- the run is unfinished in a step that may split traffic (canary, chaos, rollback) and no process
  holds the lock (the pipeline died: the kernel released its flock): it routes all traffic to the
  stable colour and notes it in the run. The run stays unfinished, so the next `promote`, `resume`
  or `abort` decides what happens to the candidate;
- the run ended `rollback_failed` and is not settled yet: it retries the whole restore (traffic,
  then colours as in the run's snapshot) on every look until the target accepts it, then marks the
  run settled. On targets without a resident guard (Kubernetes) the CLI runs the same restore in
  the foreground with exponential backoff (`restore_until_settled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from immune_suite.pipeline.plan import ROLLBACK_FAILED, TRAFFIC_SPLIT_KINDS, StepKind
from immune_suite.pipeline.restore import describe_where, restore_stable, retrying, stable_routing, where
from immune_suite.pipeline.run_state import LockHeld, RunState, RunStore, StackLock, now_iso
from immune_suite.progress import Progress
from immune_suite.targets.base import Target

# A pipeline that died in its rollback step may have left traffic split as much as one in a canary.
GUARDED_KINDS = TRAFFIC_SPLIT_KINDS | {StepKind.ROLLBACK}


def unsettled(run: RunState | None) -> bool:
    """A run whose rollback failed and whose traffic nobody has put back on stable yet."""
    return run is not None and run.status == ROLLBACK_FAILED and run.settled_at is None


def _orphaned_split(run: RunState | None) -> bool:
    return run is not None and not run.finished and run.step(run.current).kind in GUARDED_KINDS


def settle(store: RunStore, target: Target, run: RunState, progress: Progress, by: str) -> bool:
    """One attempt at finishing a failed rollback (caller holds the lock). True once settled.

    A failure is counted in the run (`failure.restore_attempts`, `failure.last_restore_error`) but not
    put on the timeline each time: a guard retrying every second for an hour would bury it.
    """
    failure = run.failure if run.failure is not None else {}
    run.failure = failure
    attempts = int(failure.get("restore_attempts", 0)) + 1
    failure["restore_attempts"] = attempts
    try:
        restore_stable(target, run)
    except Exception as error:
        failure["last_restore_error"] = f"{type(error).__name__}: {error}"
        if attempts == 1:
            run.note(f"{by}: restoring stable after the failed rollback", error=failure["last_restore_error"])
        store.save(run)
        return False
    run.settled_at = now_iso()
    failure["where_when_settled"] = where(target)
    routing = stable_routing(run)
    run.note(
        f"{by}: rollback completed, traffic on stable",
        attempts=attempts,
        active=routing.active.value,
        canary_weight=routing.canary_weight,
    )
    store.save(run)
    progress(
        f"{run.run_id}: rollback completed by {by} after {attempts} attempt(s): "
        f"{describe_where(failure['where_when_settled'])}"
    )
    return True


def restore_until_settled(
    store: RunStore,
    target: Target,
    run: RunState,
    progress: Progress,
    budget_s: float | None = None,
    initial_s: float = 1.0,
    max_wait_s: float = 60.0,
) -> bool:
    """Retry `settle` with exponential backoff (tenacity) until it succeeds or `budget_s` runs out
    (None: until it succeeds). The caller holds the stack's lock. True when settled."""

    def attempt() -> None:
        if not settle(store, target, run, progress, by="retrying restore"):
            raise RuntimeError((run.failure or {}).get("last_restore_error", "restore failed"))

    try:
        retrying(budget_s, progress, f"restoring stable for {run.run_id}", initial_s, max_wait_s)(attempt)
    except Exception:
        return False
    return True


def guard_once(stack: str, target: Target, progress: Progress) -> bool:
    """One look; True when the guard moved traffic back to stable (or finished a failed rollback)."""
    store = RunStore(stack)
    run = store.load()
    if not (_orphaned_split(run) or unsettled(run)):
        return False
    assert run is not None
    if not unsettled(run):
        traffic = target.traffic()
        if traffic is None or traffic == stable_routing(run):
            return False
    try:
        lock = StackLock(stack).acquire()
    except LockHeld:
        return False  # someone is in charge
    try:
        run = store.load()  # re-read under the lock: the owner may have finished meanwhile
        if unsettled(run):
            assert run is not None
            return settle(store, target, run, progress, by="guard")
        if run is None or not _orphaned_split(run):
            return False
        started = time.monotonic()
        routing = stable_routing(run)
        target.set_traffic(routing.active, routing.canary_weight)
        elapsed = round(time.monotonic() - started, 3)
        run.note("guard: pipeline gone, traffic back on stable", step=run.current, seconds=elapsed)
        store.save(run)
        progress(f"pipeline of {stack} died in {run.current}: traffic back on {run.stable_color.value}")
        return True
    finally:
        lock.release()


def guard_forever(
    stack: str, target_factory: Callable[[], Target], progress: Progress, interval_s: float = 1.0
) -> None:
    target = target_factory()
    while True:
        try:
            guard_once(stack, target, progress)
        except Exception as error:
            progress(f"guard check failed: {type(error).__name__}: {error}")
        time.sleep(interval_s)
