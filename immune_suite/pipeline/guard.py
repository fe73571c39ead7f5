"""The dead man's switch: nobody in charge of split traffic means traffic goes back to stable.

Runs beside the stack (under supervisord on the local stack). Once a second it looks at the
stack's run: if a run is unfinished in a step that splits traffic and no process holds the
stack's lock (the pipeline died: the kernel released its flock), the guard takes the lock,
routes all traffic to the stable colour and notes it in the run. The run stays unfinished, so
the next `promote`, `resume` or `abort` decides what happens to the candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from immune_suite.pipeline.plan import TRAFFIC_SPLIT_KINDS
from immune_suite.pipeline.run_state import LockHeld, RunStore, StackLock
from immune_suite.progress import Progress
from immune_suite.targets.base import Target


def guard_once(stack: str, target: Target, progress: Progress) -> bool:
    """One look; True when the guard had to move traffic back to stable."""
    store = RunStore(stack)
    run = store.load()
    if run is None or run.finished or run.step(run.current).kind not in TRAFFIC_SPLIT_KINDS:
        return False
    traffic = target.traffic()
    if traffic is None or (traffic.active == run.stable_color and traffic.canary_weight == 0):
        return False
    try:
        lock = StackLock(stack).acquire()
    except LockHeld:
        return False  # someone is in charge
    try:
        run = store.load()  # re-read under the lock: the owner may have finished meanwhile
        if run is None or run.finished or run.step(run.current).kind not in TRAFFIC_SPLIT_KINDS:
            return False
        started = time.monotonic()
        target.set_traffic(run.stable_color, 0)
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
