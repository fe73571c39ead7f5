"""Putting traffic back on stable, checking that it is there, and saying what is where when it is not.

Shared by the rollback step, the guard (which keeps restoring after a failed rollback) and the CLI
(which, on targets without a resident guard, keeps restoring in the foreground). Every call here is
idempotent, so retrying a half-done restore is always safe.

Retries use tenacity's exponential backoff (https://tenacity.readthedocs.io/): attempt n waits
`min(initial_s * 2**(n-1), max_wait_s)` seconds, until a time budget (or never) runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, stop_after_delay, stop_never, wait_exponential

from immune_suite.gates.attribution import BASELINE
from immune_suite.pipeline.run_state import RunState, now_iso
from immune_suite.progress import Progress
from immune_suite.targets.base import Color, Target, TargetError, TrafficState

T = TypeVar("T")


def stable_routing(run: RunState) -> TrafficState:
    """The routing the run started from (its snapshot), else everything on the stable colour."""
    snapshot = run.snapshot
    return snapshot.traffic if snapshot and snapshot.traffic else TrafficState(run.stable_color, 0)


def colour_shares(traffic: TrafficState) -> dict[str, int]:
    """Percent of ingress traffic per colour under `traffic` (colours at 0 % are left out)."""
    shares = {
        traffic.active.value: 100 - traffic.canary_weight - traffic.baseline_weight,
        traffic.active.other.value: traffic.canary_weight,
        BASELINE: traffic.baseline_weight,  # fresh stable instances beside a canary (Target.start_baseline)
    }
    return {colour: share for colour, share in shares.items() if share > 0}


def live_shares(target: Target) -> dict[str, int] | None:
    """Percent of ingress traffic per colour from the router's own weights, where the target can read
    them back (the local stack's HAProxy, Kubernetes' routing objects: `<colour>-<name>` -> weight);
    None otherwise."""
    read = getattr(target, "live_weights", None)
    if read is None:
        return None
    weights: dict[str, int] | None = read()
    if weights is None:
        return None
    per_colour = {
        group: sum(w for name, w in weights.items() if name.startswith(f"{group}-"))
        for group in (*(c.value for c in Color), BASELINE)
    }
    total = sum(per_colour.values())
    if total == 0:
        return {}
    return {colour: round(100 * weight / total) for colour, weight in per_colour.items() if weight > 0}


def move_traffic_to_stable(target: Target, run: RunState) -> TrafficState:
    """Route as before the run, then read the routing back; raises `TargetError` when it differs."""
    wanted = stable_routing(run)
    target.set_traffic(wanted.active, wanted.canary_weight)
    seen = target.traffic()
    if seen != wanted:
        raise TargetError(f"routing read back as {seen} after setting {wanted}")
    live = live_shares(target)
    if live is not None and live != colour_shares(wanted):
        raise TargetError(f"proxy weights read back give {live}, expected {colour_shares(wanted)}")
    return wanted


def remove_candidate(target: Target, run: RunState) -> None:
    """Colours back as in the run's snapshot (the candidate scaled away); traffic must be on stable."""
    if run.snapshot is not None:
        target.restore(run.snapshot)
    else:
        target.scale_down(run.candidate_color)


def restore_stable(target: Target, run: RunState) -> None:
    """Both halves of a rollback, traffic first."""
    move_traffic_to_stable(target, run)
    remove_candidate(target, run)


def where(target: Target) -> dict[str, Any]:
    """What is where, read back from the target: routing, the proxy's weights (where readable), and per
    colour the release and its live/ready replicas. Each part is read on its own, so a target that is
    half broken still tells what it can; a part that cannot be read says why."""
    report: dict[str, Any] = {"read_at": now_iso()}
    try:
        traffic = target.traffic()
        report["traffic"] = traffic.to_dict() if traffic else None
        report["shares"] = colour_shares(traffic) if traffic else {}
    except Exception as error:  # a broken target is exactly when this report matters
        report["traffic_error"] = f"{type(error).__name__}: {error}"
    try:
        live = live_shares(target)
        if live is not None:
            report["live_shares"] = live
    except Exception as error:
        report["live_shares_error"] = f"{type(error).__name__}: {error}"
    colours: dict[str, Any] = {}
    for colour in Color:
        try:
            health = target.health(colour)
            colours[colour.value] = {
                "release": health.release.version if health.release else None,
                "deployed": health.deployed,
                "live_replicas": health.live_replicas,
                "ready_replicas": health.ready_replicas,
                "desired_replicas": health.desired_replicas,
            }
        except Exception as error:
            colours[colour.value] = {"error": f"{type(error).__name__}: {error}"}
    report["colours"] = colours
    return report


def describe_where(report: dict[str, Any]) -> str:
    """One line for people: which colour gets which share, and what runs on each colour."""
    shares = report.get("live_shares", report.get("shares"))
    serving = (
        ", ".join(f"{share}% {colour}" for colour, share in sorted(shares.items()))
        if shares is not None
        else f"unknown ({report.get('traffic_error', 'no routing')})"
    )
    parts = []
    for colour, info in sorted(report.get("colours", {}).items()):
        if "error" in info:
            parts.append(f"{colour}: unreadable ({info['error']})")
        else:
            parts.append(f"{colour}: {info['release'] or '-'} {info['live_replicas']} live")
    return f"ingress: {serving or 'nothing'}; " + "; ".join(parts)


def retrying(
    budget_s: float | None,
    progress: Progress,
    what: str,
    initial_s: float = 0.2,
    max_wait_s: float = 10.0,
) -> Callable[[Callable[[], T]], T]:
    """Call a function until it returns, backing off exponentially; re-raise its last error once
    `budget_s` seconds have passed since the first attempt (None: never give up)."""

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        progress(f"{what}: attempt {state.attempt_number} failed ({error}); retrying in {wait:.1f}s")

    def call(function: Callable[[], T]) -> T:
        retry = Retrying(
            stop=stop_never if budget_s is None else stop_after_delay(budget_s),
            wait=wait_exponential(multiplier=initial_s, max=max_wait_s),
            before_sleep=report,
            reraise=True,
        )
        return retry(function)

    return call
