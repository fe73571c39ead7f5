"""Canary decisions by simulation: how often the REAL step logic rolls back good candidates and
promotes bad ones, at each stack's step sizes, window lengths and request rates.

    .venv/bin/python bench/canary_decisions.py [--runs 1000] [--seed 1] [--stacks local,ci,staging,prod]
                                               [--look-every 1.0] [--scenarios equal,half_slo,...]

Every simulated promotion goes through `immune_suite.pipeline.canary.StepDecision` (the interim
looks, the end-of-window verdict and the inconclusive -> extend -> rollback rule that
`run_canary_step` runs) and so through `immune_suite.analysis.analyse_canary_step`; only the HTTP
load is replaced by samples drawn from a model. Prints figures; asserts nothing.

Traffic model (per stack, from stacks/<name>.yaml and what the runner does): the baseline load
shape's 100 RPS times `canary.rps_scale`, `percent` of it to the canary (at 100 %: half the rate on
the ingress and half on the stable endpoint, as the runner splits it), each window
`step_duration_s` long minus its ramp-up (a fifth) and `canary.warmup_s`, a look every
`--look-every` seconds (the runner looks every 2 x poll_s = 1 s). Request arrivals are Poisson;
latency of a successful request is log-normal (median 20 ms, sigma 0.5, as the local stack
measures); stable (and baseline) fail 1/10 of the error SLO.

Scenarios (good ones count false rollbacks, bad ones count misses = promoted):
  equal           candidate = stable                                  (good)
  half_slo        error ratio at half the SLO                         (good)
  fresh_baseline  harmless change, freshly started: first seconds 1.5x slower, decaying (tau 10 s),
                  judged against a fresh baseline with the same transient (Kayenta)  (good)
  fresh_stable    the same harmless change judged against a long-warmed stable (for contrast: what
                  the 10 % rollback in issue 14 §3b was)                              (good)
  twice_slo       error ratio 2x the SLO                              (bad)
  crash_5pct      5 % of requests fail                                (bad; also: caught at step 1)
  tail_150ms      +150 ms on 10 % of requests                         (bad)

Targets (issue 14): false rollback <= 1 % at half the SLO; a 5 % crash caught at the first step
>= 99 %; the harmless change (fresh baseline) passes >= 99 %.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from immune_suite.pipeline.canary import (
    BASELINE,
    Columns,
    StepDecision,
    Window,
    prepare_run,
)
from immune_suite.stack_config import StackConfig, load_stack
from immune_suite.verdict import Outcome

BASE_RPS = 100.0  # load/immune_load/shapes.py baseline()
MEDIAN_MS, SIGMA = 20.0, 0.5
CANARY, STABLE = "green", "blue"


@dataclass(frozen=True)
class Scenario:
    name: str
    good: bool
    error_ratio: float | None = None  # of the candidate; None: as stable
    tail_share: float = 0.0  # share of candidate requests slowed by tail_ms
    tail_ms: float = 0.0
    transient: bool = False  # freshly started candidate: 1.5x slower at first
    fresh_baseline: bool = False  # a fresh baseline (same transient) is the reference


def scenarios(slo_error: float) -> list[Scenario]:
    return [
        Scenario("equal", True),
        Scenario("half_slo", True, error_ratio=slo_error / 2),
        Scenario("fresh_baseline", True, transient=True, fresh_baseline=True),
        Scenario("fresh_stable", True, transient=True),
        Scenario("twice_slo", False, error_ratio=2 * slo_error),
        Scenario("crash_5pct", False, error_ratio=0.05 + slo_error / 10),
        Scenario("tail_150ms", False, tail_share=0.10, tail_ms=150.0),
    ]


def draw(
    rng: np.random.Generator,
    rate: float,
    start: float,
    span: float,
    error_ratio: float,
    transient_since: float | None = None,
    tail: tuple[float, float] = (0.0, 0.0),
) -> Columns:
    """Poisson arrivals at `rate`/s over [start, start + span): latency (ms), ok, at."""
    count = int(rng.poisson(rate * span))
    at = np.sort(rng.uniform(start, start + span, count))
    latency = rng.lognormal(math.log(MEDIAN_MS), SIGMA, count)
    if transient_since is not None:
        latency *= 1 + 0.5 * np.exp(-(at - transient_since) / 10.0)
    share, extra = tail
    if share:
        latency += np.where(rng.random(count) < share, extra, 0.0)
    ok = rng.random(count) >= error_ratio
    return Columns(latency, ok, at)


def head(window: Window, until: float) -> Window:
    """The samples written by `until` (each colour's columns are sorted by time)."""
    out: Window = {}
    for color, c in window.items():
        i = int(np.searchsorted(c.at, until, side="right"))
        out[color] = Columns(c.latency_ms[:i], c.ok[:i], c.at[:i])
    return out


@dataclass
class Promotion:
    promoted: bool
    failed_step: int | None  # index of the step that rolled back
    outcome: str  # the deciding outcome: pass, fail, inconclusive
    extensions: int


def simulate(
    stack: StackConfig, scenario: Scenario, rng: np.random.Generator, look_every: float
) -> Promotion:
    rate = BASE_RPS * stack.canary.rps_scale
    duration = stack.canary.step_duration_s
    ramp = duration / 5  # what the runner passes as ramp_s
    warmup = stack.canary.warmup_s
    span = duration - ramp
    stable_error = stack.slo.error_ratio / 10
    canary_error = stable_error if scenario.error_ratio is None else scenario.error_ratio
    clock = 0.0  # the candidate (and fresh baseline) start at 0, a ramp before the first window
    extensions = 0
    for index, percent in enumerate(stack.canary.steps):
        decision = StepDecision(percent, CANARY, STABLE, stack, max(duration - ramp - warmup, look_every))
        windows = 1
        while True:
            for _ in range(windows):
                start = clock + ramp
                canary_rate = rate * percent / 100 if percent < 100 else rate / 2
                stable_rate = rate * (100 - percent) / 100 if percent < 100 else rate / 2
                since = 0.0 if scenario.transient else None
                window: Window = {
                    CANARY: draw(
                        rng,
                        canary_rate,
                        start,
                        span,
                        canary_error,
                        since,
                        (scenario.tail_share, scenario.tail_ms),
                    ),
                    STABLE: draw(rng, stable_rate, start, span, stable_error),
                }
                if scenario.fresh_baseline:
                    window[BASELINE] = draw(rng, canary_rate, start, span, stable_error, since)
                stopped = False
                look_at = start + look_every
                while look_at < start + span:
                    partial = prepare_run(head(window, look_at), 0.0, warmup, CANARY)
                    if decision.look(partial) is not None:
                        stopped = True
                        break
                    look_at += look_every
                decision.window_done(prepare_run(window, 0.0, warmup, CANARY))
                clock += duration
                if stopped:
                    return Promotion(False, index, Outcome.FAIL.value, extensions)
            final, windows = decision.phase_done()
            if not windows:
                break
            extensions += 1
        if final.outcome is not Outcome.PASS:
            return Promotion(False, index, final.outcome.value, extensions)
    return Promotion(True, None, Outcome.PASS.value, extensions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="promotions simulated per stack and scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stacks", default="local,ci,staging,prod")
    parser.add_argument("--scenarios", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--look-every", type=float, default=1.0, help="seconds between interim looks")
    args = parser.parse_args(argv)
    print(f"runs={args.runs} seed={args.seed} look_every={args.look_every}s")
    header = (
        f"{'stack':8} {'scenario':15} {'good':5} {'promoted':>9} {'rolled back':>12} {'at step 1':>10}"
        f" {'inconcl.':>9} {'extended':>9} {'s/run':>6}  verdict"
    )
    targets_ok = True
    for stack_name in args.stacks.split(","):
        stack = load_stack(stack_name)
        rate = BASE_RPS * stack.canary.rps_scale
        print(
            f"\n{stack_name}: steps {list(stack.canary.steps)}, {stack.canary.step_duration_s:g} s windows,"
            f" {rate:g} RPS, warm-up {stack.canary.warmup_s:g} s, error SLO {stack.slo.error_ratio:g},"
            f" alpha {stack.comparison.alpha:g}"
        )
        print(header)
        chosen = [
            s for s in scenarios(stack.slo.error_ratio) if not args.scenarios or s.name in args.scenarios
        ]
        for index, scenario in enumerate(chosen):
            rng = np.random.default_rng([args.seed, index, sum(map(ord, stack_name))])
            started = time.perf_counter()
            results = [simulate(stack, scenario, rng, args.look_every) for _ in range(args.runs)]
            elapsed = (time.perf_counter() - started) / args.runs
            promoted = sum(r.promoted for r in results) / args.runs
            at_first = sum(r.failed_step == 0 for r in results) / args.runs
            outcomes = Counter(r.outcome for r in results if not r.promoted)
            inconclusive = outcomes[Outcome.INCONCLUSIVE.value] / args.runs
            extended = sum(r.extensions > 0 for r in results) / args.runs
            verdict = ""
            if scenario.name == "half_slo":
                ok = 1 - promoted <= 0.01
                verdict = f"false rollback {1 - promoted:.1%} (target <= 1 %): {'MET' if ok else 'MISSED'}"
                targets_ok &= ok
            elif scenario.name == "crash_5pct":
                ok = at_first >= 0.99
                verdict = f"caught at step 1 {at_first:.1%} (target >= 99 %): {'MET' if ok else 'MISSED'}"
                targets_ok &= ok
            elif scenario.name == "fresh_baseline":
                ok = promoted >= 0.99
                verdict = f"passes {promoted:.1%} (target >= 99 %): {'MET' if ok else 'MISSED'}"
                targets_ok &= ok
            elif scenario.good:
                verdict = f"false rollback {1 - promoted:.1%}"
            else:
                verdict = f"miss (promoted) {promoted:.1%}"
            print(
                f"{stack_name:8} {scenario.name:15} {scenario.good!s:5} {promoted:9.1%} {1 - promoted:12.1%}"
                f" {at_first:10.1%} {inconclusive:9.1%} {extended:9.1%} {elapsed:6.3f}  {verdict}"
            )
    print(f"\nall targets met: {targets_ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
