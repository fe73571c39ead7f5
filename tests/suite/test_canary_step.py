"""Interim looks during a canary window: a clearly bad canary loses its traffic before the window ends."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from immune_suite.analysis import analyse_canary_step
from immune_suite.pipeline.canary import (
    CanaryResult,
    Columns,
    StepDecision,
    decisive_failures,
    first_breach,
    prepare_run,
    read_window,
    run_canary_step,
    same_window,
    steady_part,
)
from immune_suite.progress import RecordingProgress
from immune_suite.stack_config import InconclusiveConfig, StackConfig
from immune_suite.targets.base import Color
from immune_suite.verdict import Outcome, Status, Verdict
from tests.suite.support import FakeSample, LoadRunResult

STACK = StackConfig.model_validate({"name": "unit"})


def step(
    percent: int,
    stack: StackConfig,
    load: Callable[[str, Path], LoadRunResult],
    out: Path,
    back_to_stable: Callable[[], None],
    look_every_s: float = 0.05,
    duration_s: float | None = None,
) -> CanaryResult:
    """One canary step of green (the candidate) against blue at `percent` %, windows of `duration_s`
    seconds (None: the stack's), an interim look every `look_every_s` seconds."""
    return run_canary_step(
        percent,
        Color.GREEN,
        Color.BLUE,
        stack,
        load,
        ("http://ingress", "http://stable"),
        out,
        back_to_stable,
        RecordingProgress(),
        look_every_s=look_every_s,
        duration_s=duration_s,
    )


class StreamingLoad:
    """A load gate that writes samples.jsonl as it goes (10% canary), like the real locust run.

    It writes `count` responses (not for a fixed time: a loaded test machine writes fewer per second)
    and stops sending to the canary once traffic went back to stable, as the real ingress does.
    """

    def __init__(self, canary_ms: float, count: int) -> None:
        self.canary_ms, self.count = canary_ms, count
        self.written = 0
        self.written_when_moved: int | None = None

    def back_to_stable(self) -> None:
        self.written_when_moved = self.written

    def __call__(self, url: str, directory: Path) -> LoadRunResult:
        directory.mkdir(parents=True, exist_ok=True)
        samples: dict[str, list[FakeSample]] = {"blue": [], "green": []}
        with (directory / "samples.jsonl").open("w") as handle:
            for i in range(self.count):
                canary = i % 10 == 0 and self.written_when_moved is None
                color = "green" if canary else "blue"
                latency = self.canary_ms if canary else 10.0 + i % 7
                sample = FakeSample(latency + i % 3, True, time.time())
                samples[color].append(sample)
                row = {"color": color, "latency_ms": sample.latency_ms, "ok": True, "at": sample.at}
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                self.written += 1
                time.sleep(0.001)
        return LoadRunResult(Verdict("load", Status.PASS, "ok"), samples)


def test_bad_canary_goes_back_to_stable_during_the_window(tmp_path: Path) -> None:
    load = StreamingLoad(450.0, 4000)
    result = step(10, STACK, load, tmp_path, load.back_to_stable, look_every_s=0.2, duration_s=4.0)
    # traffic went back while the window was still running (not at its end)
    assert load.written_when_moved is not None and load.written_when_moved < load.count
    assert result.early_stop_at is not None and not result.verdict.passed
    assert result.verdict.outcome is Outcome.FAIL
    assert result.verdict.details["decided_by"] == "interim look"
    assert result.first_breach_at is not None and result.first_breach_at <= result.early_stop_at


def test_good_canary_runs_the_full_window(tmp_path: Path) -> None:
    load = StreamingLoad(12.0, 2500)
    result = step(10, STACK, load, tmp_path, load.back_to_stable, look_every_s=0.2, duration_s=2.5)
    assert load.written_when_moved is None and result.early_stop_at is None
    assert result.verdict.passed, result.verdict.summary
    assert result.interim_looks >= 1


def test_read_window_skips_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text('{"color": "blue", "latency_ms": 5, "ok": true, "at": 1}\n{"color": "gr')
    assert [len(v) for v in read_window(path).values()] == [1]


def test_interim_look_waits_for_a_stable_baseline(tmp_path: Path) -> None:
    """At 100% stable samples come from a slower-starting baseline load; no early verdict without them."""
    moved: list[float] = []
    window_start = time.time()

    def load(url: str, directory: Path) -> LoadRunResult:
        directory.mkdir(parents=True, exist_ok=True)
        color = "green" if url == "http://ingress" else "blue"
        delay = 0.0 if color == "green" else 1.0
        time.sleep(delay)
        samples = {color: [FakeSample(12.0 + i % 5, True, window_start + i * 0.01) for i in range(200)]}
        with (directory / "samples.jsonl").open("w") as handle:
            for sample in samples[color]:
                handle.write(
                    json.dumps({"color": color, "latency_ms": sample.latency_ms, "ok": True, "at": sample.at})
                    + "\n"
                )
        time.sleep(2.0 - delay)
        return LoadRunResult(Verdict("load", Status.PASS, "ok"), samples)

    result = step(100, STACK, load, tmp_path, lambda: moved.append(time.time()), look_every_s=0.1)
    assert not moved, result.verdict.summary
    assert result.verdict.passed, result.verdict.summary


def test_same_window_drops_samples_outside_the_overlap() -> None:
    canary = [FakeSample(900.0, True, t) for t in (0.0, 1.0)] + [
        FakeSample(10.0, True, t) for t in (3.0, 4.0, 5.0)
    ]
    stable = [FakeSample(10.0, True, t) for t in (2.5, 3.5, 4.5, 6.0)]
    kept_canary, kept_stable = same_window(canary, stable)
    assert kept_canary.at.tolist() == [3.0, 4.0, 5.0]
    assert kept_stable.at.tolist() == [2.5, 3.5, 4.5]


def test_steady_part_drops_each_runs_ramp_up() -> None:
    run = {
        "green": [FakeSample(1.0, True, t) for t in (10.0, 11.0, 13.0)],
        "blue": [FakeSample(1.0, True, 12.5)],
    }
    kept = steady_part(run, ramp_s=2.0)
    assert kept["green"].at.tolist() == [13.0] and kept["blue"].at.tolist() == [12.5]


def test_warm_up_is_dropped_for_canary_and_baseline_not_stable() -> None:
    run = {
        color: [FakeSample(1.0, True, float(t)) for t in range(10)] for color in ("green", "blue", "baseline")
    }
    kept = prepare_run(run, ramp_s=0.0, warmup_s=3.0, candidate="green")
    assert kept["green"].at.tolist() == kept["baseline"].at.tolist() == [float(t) for t in range(3, 10)]
    assert len(kept["blue"]) == 10


def test_interim_percentile_breach_on_few_samples_is_not_decisive() -> None:
    stable = [FakeSample(20.0 + i % 9, True, float(i)) for i in range(300)]
    # one slow request among 20: a tail percentile over the SLO, the median unchanged
    canary = [FakeSample(20.0 + i % 9, True, float(i)) for i in range(19)] + [FakeSample(900.0, True, 19.0)]
    look = analyse_canary_step(100, canary, stable, STACK.slo, STACK.comparison, information=0.5)
    assert not look.passed and look.outcome is Outcome.INCONCLUSIVE
    assert decisive_failures(look) == []


# --- a step's outcome: fresh baseline, extension, rollback (issue 14 §3, §3b) ----------------------


def batch_load(
    make: Callable[[int], dict[str, list[FakeSample]]], calls: list[str] | None = None
) -> Callable[[str, Path], LoadRunResult]:
    """A load gate that writes one window's samples at once (window number -> colour -> samples)."""
    made: list[int] = []

    def load(url: str, directory: Path) -> LoadRunResult:
        directory.mkdir(parents=True, exist_ok=True)
        if calls is not None:
            calls.append(str(directory.relative_to(directory.parent.parent)))
        made.append(len(made))
        samples = make(len(made) - 1)
        with (directory / "samples.jsonl").open("w") as handle:
            for color, rows in samples.items():
                for row in rows:
                    handle.write(
                        json.dumps({"color": color, "latency_ms": row.latency_ms, "ok": row.ok, "at": row.at})
                        + "\n"
                    )
        return LoadRunResult(Verdict("load", Status.PASS, "ok"), samples)

    return load


def window(
    window_no: int, count: int, latency: Callable[[int], float], ok: Callable[[int], bool] = lambda i: True
) -> list[FakeSample]:
    start = 1000.0 + 100.0 * window_no
    return [FakeSample(latency(i), ok(i), start + i * 10.0 / count) for i in range(count)]


def run_step(
    stack: StackConfig, load: Callable[[str, Path], LoadRunResult], tmp_path: Path, percent: int = 10
) -> tuple[Any, list[float]]:
    moved: list[float] = []
    result = step(percent, stack, load, tmp_path, lambda: moved.append(time.time()))
    return result, moved


def jitter(base: float) -> Callable[[int], float]:
    return lambda i: base + (i * 7919 % 13)


def test_fresh_canary_is_judged_against_a_fresh_baseline(tmp_path: Path) -> None:
    """Kayenta: a harmless change, freshly started (1.5x slower), against a baseline started with it."""

    def make(n: int) -> dict[str, list[FakeSample]]:
        return {
            "green": window(n, 300, jitter(30.0)),
            "baseline": window(n, 300, jitter(30.0)),
            "blue": window(n, 2700, jitter(20.0)),
        }

    result, _ = run_step(STACK, batch_load(make), tmp_path / "with")
    assert result.verdict.passed, result.verdict.summary
    assert result.verdict.details["reference"] == "baseline"

    def without_baseline(n: int) -> dict[str, list[FakeSample]]:
        return {k: v for k, v in make(n).items() if k != "baseline"}

    result, _ = run_step(STACK, batch_load(without_baseline), tmp_path / "without")
    assert not result.verdict.passed  # against a long-warmed stable the same canary looks slower
    assert result.verdict.details["reference"] == "stable"


def test_warm_up_keeps_a_start_up_transient_out_of_the_verdict(tmp_path: Path) -> None:
    def make(n: int) -> dict[str, list[FakeSample]]:
        # the canary's first 2 s (60 requests) are 5x slower than stable, the rest like stable
        return {
            "green": window(n, 300, lambda i: 150.0 if i < 60 else 20.0 + i % 13),
            "blue": window(n, 2700, jitter(20.0)),
        }

    cold = STACK.model_copy(update={"canary": STACK.canary.model_copy(update={"warmup_s": 0.0})})
    warm = STACK.model_copy(update={"canary": STACK.canary.model_copy(update={"warmup_s": 2.5})})
    assert not run_step(cold, batch_load(make), tmp_path / "cold")[0].verdict.passed
    result, _ = run_step(warm, batch_load(make), tmp_path / "warm")
    assert result.verdict.passed, result.verdict.summary


def test_inconclusive_step_is_extended_and_then_passes(tmp_path: Path) -> None:
    calls: list[str] = []

    def make(n: int) -> dict[str, list[FakeSample]]:
        return {"green": window(n, 60, jitter(20.0)), "blue": window(n, 540, jitter(20.0))}

    result, moved = run_step(STACK, batch_load(make, calls), tmp_path)
    assert result.verdict.passed, result.verdict.summary
    assert result.verdict.outcome is Outcome.PASS
    assert result.extension_windows >= 1 and len(calls) == 1 + result.extension_windows
    assert "after" in result.verdict.summary and not moved


def test_still_inconclusive_after_the_extension_rolls_back(tmp_path: Path) -> None:
    """Too few canary requests to judge p99 or rule out a 5 % crash rate, even extended: rolled back."""
    stack = STACK.model_copy(
        update={"canary": STACK.canary.model_copy(update={"inconclusive": InconclusiveConfig(max_windows=1)})}
    )
    calls: list[str] = []

    def make(n: int) -> dict[str, list[FakeSample]]:
        return {"green": window(n, 30, jitter(20.0)), "blue": window(n, 270, jitter(20.0))}

    result, _ = run_step(stack, batch_load(make, calls), tmp_path)
    assert not result.verdict.passed and result.verdict.status is Status.FAIL
    assert result.verdict.outcome is Outcome.INCONCLUSIVE
    assert result.extension_windows == 1 and len(calls) == 2
    assert "still inconclusive" in result.verdict.summary
    assert result.verdict.details["decided_by"] == "full window"


def test_no_extension_when_configured_off(tmp_path: Path) -> None:
    stack = STACK.model_copy(
        update={
            "canary": STACK.canary.model_copy(update={"inconclusive": InconclusiveConfig(extend_times=0)})
        }
    )
    calls: list[str] = []

    def make(n: int) -> dict[str, list[FakeSample]]:
        return {"green": window(n, 30, jitter(20.0)), "blue": window(n, 270, jitter(20.0))}

    result, _ = run_step(stack, batch_load(make, calls), tmp_path)
    assert result.verdict.outcome is Outcome.INCONCLUSIVE and not result.verdict.passed
    assert len(calls) == 1


def test_five_percent_crashes_fail_the_first_step(tmp_path: Path) -> None:
    def make(n: int) -> dict[str, list[FakeSample]]:
        return {
            "green": window(n, 200, jitter(20.0), lambda i: i % 20 != 7),
            "blue": window(n, 1800, jitter(20.0)),
        }

    result, _ = run_step(STACK, batch_load(make), tmp_path)
    assert result.verdict.outcome is Outcome.FAIL and not result.verdict.passed
    assert result.verdict.details["outcomes"]["canary_error_ratio"] == "fail"
    assert result.extension_windows == 0


def test_no_canary_data_fails_without_extension(tmp_path: Path) -> None:
    calls: list[str] = []

    def make(n: int) -> dict[str, list[FakeSample]]:
        return {"blue": window(n, 500, jitter(20.0))}

    result, _ = run_step(STACK, batch_load(make, calls), tmp_path)
    assert result.verdict.outcome is Outcome.FAIL and "NO DATA" in result.verdict.summary
    assert len(calls) == 1


def test_step_decision_runs_without_http() -> None:
    """The logic the benchmark drives: looks, window ends, the extension plan."""
    decision = StepDecision(10, "green", "blue", STACK, steady_s=10.0)
    run = {"green": Columns.of(window(0, 40, jitter(20.0))), "blue": Columns.of(window(0, 400, jitter(20.0)))}
    assert decision.look(run) is None
    decision.window_done(run)
    final, extend = decision.phase_done()
    assert final.outcome is Outcome.INCONCLUSIVE and extend >= 2  # 40 per window, 100+ needed


# -- first breach: when users started paying for a bad canary ------------------------------------
T0 = 1_000_000.0


def _written_load(by_color: dict[str, list[FakeSample]]) -> Callable[[str, Path], LoadRunResult]:
    """A load run whose samples are given (times included), written as the real load gate writes them."""

    def load(url: str, directory: Path) -> LoadRunResult:
        directory.mkdir(parents=True, exist_ok=True)
        rows = [
            {"color": color, "latency_ms": s.latency_ms, "ok": s.ok, "at": s.at}
            for color, samples in by_color.items()
            for s in samples
        ]
        (directory / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return LoadRunResult(Verdict("load", Status.PASS, "ok"), by_color)

    return load


def _loaded_stable(count: int = 2000) -> list[FakeSample]:
    # A loaded machine: stable's tail (every 40th request, 190 ms) is slower than the whole canary.
    return [FakeSample(190.0 if j % 40 == 0 else 10.0, True, T0 + j * 0.005) for j in range(count)]


def test_a_rolled_back_step_whose_only_failed_requests_were_in_the_warm_up_names_the_first(
    tmp_path: Path,
) -> None:
    stack = StackConfig.model_validate({"name": "unit", "canary": {"warmup_s": 1.0}})
    canary = [FakeSample(60.0, not 5 <= i < 10, T0 + i * 0.025) for i in range(400)]
    load = _written_load({"blue": _loaded_stable(), "green": canary})
    result = step(10, stack, load, tmp_path, lambda: None, duration_s=10.0)
    assert not result.verdict.passed  # 60 ms against a 10 ms median: rolled back
    # The judged canary requests (after the warm-up) are all faster than stable's p99 and fine; the
    # users still got five errors during the warm-up, and the first of them is the breach.
    assert result.first_breach_at == T0 + 5 * 0.025


def test_a_canary_request_over_the_slo_is_a_breach_even_when_the_reference_is_slower() -> None:
    stack = StackConfig.model_validate({"name": "unit", "comparison": {"min_effect_ms": 300}})
    reference = [FakeSample(400.0, True, T0 + j) for j in range(200)]  # slower than the SLO p95 itself
    canary = [FakeSample(250.0 if i == 7 else 50.0, True, T0 + i) for i in range(100)]
    assert stack.slo.p95_ms < 250.0 < stack.comparison.min_effect_ms
    assert first_breach(canary, reference, stack) == T0 + 7


def test_a_canary_without_a_failed_or_slow_request_has_no_breach() -> None:
    canary = [FakeSample(50.0, True, T0 + i) for i in range(100)]
    assert first_breach(canary, _loaded_stable(), STACK) is None
    assert first_breach([*canary, FakeSample(5.0, False, T0 + 50.5)], _loaded_stable(), STACK) == T0 + 50.5
