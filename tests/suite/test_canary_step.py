"""Interim looks during a canary window: a clearly bad canary loses its traffic before the window ends."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from immune_suite.pipeline.canary import read_window, run_canary_step, same_window, steady_part
from immune_suite.progress import RecordingProgress
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Color
from immune_suite.verdict import Status, Verdict
from tests.suite.conftest import FakeSample, LoadRunResult

STACK = StackConfig.model_validate({"name": "unit"})


def streaming_load(canary_ms: float, seconds: float, stop: threading.Event) -> Any:
    """A load gate that writes samples.jsonl as it goes (10% canary), like the real locust run."""

    def load(url: str, directory: Path) -> LoadRunResult:
        directory.mkdir(parents=True, exist_ok=True)
        samples: dict[str, list[FakeSample]] = {"blue": [], "green": []}
        deadline = time.monotonic() + seconds
        with (directory / "samples.jsonl").open("w") as handle:
            i = 0
            while time.monotonic() < deadline and not stop.is_set():
                color = "green" if i % 10 == 0 else "blue"
                latency = canary_ms if color == "green" else 10.0 + i % 7
                sample = FakeSample(latency + i % 3, True, time.time())
                samples[color].append(sample)
                handle.write(
                    json.dumps({"color": color, "latency_ms": sample.latency_ms, "ok": True, "at": sample.at})
                    + "\n"
                )
                handle.flush()
                i += 1
                time.sleep(0.002)
        return LoadRunResult(Verdict("load", Status.PASS, "ok"), samples)

    return load


def test_bad_canary_goes_back_to_stable_during_the_window(tmp_path: Path) -> None:
    moved: list[float] = []
    stop = threading.Event()
    started = time.time()
    result = run_canary_step(
        10,
        Color.GREEN,
        Color.BLUE,
        STACK,
        streaming_load(450.0, 6.0, stop),
        ("http://ingress", "http://stable"),
        tmp_path,
        lambda: moved.append(time.time()),
        RecordingProgress(),
        look_every_s=0.2,
    )
    stop.set()
    assert moved and moved[0] - started < 5.0  # well before the 6 s window ended
    assert result.early_stop_at is not None and not result.verdict.passed
    assert result.verdict.details["decided_by"] == "interim look"
    assert result.first_breach_at is not None and result.first_breach_at <= result.early_stop_at


def test_good_canary_runs_the_full_window(tmp_path: Path) -> None:
    moved: list[float] = []
    result = run_canary_step(
        10,
        Color.GREEN,
        Color.BLUE,
        STACK,
        streaming_load(12.0, 1.5, threading.Event()),
        ("http://ingress", "http://stable"),
        tmp_path,
        lambda: moved.append(time.time()),
        RecordingProgress(),
        look_every_s=0.2,
    )
    assert not moved and result.early_stop_at is None
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

    result = run_canary_step(
        100,
        Color.GREEN,
        Color.BLUE,
        STACK,
        load,
        ("http://ingress", "http://stable"),
        tmp_path,
        lambda: moved.append(time.time()),
        RecordingProgress(),
        look_every_s=0.1,
    )
    assert not moved, result.verdict.summary
    assert result.verdict.passed, result.verdict.summary


def test_same_window_drops_samples_outside_the_overlap() -> None:
    canary = [FakeSample(900.0, True, t) for t in (0.0, 1.0)] + [
        FakeSample(10.0, True, t) for t in (3.0, 4.0, 5.0)
    ]
    stable = [FakeSample(10.0, True, t) for t in (2.5, 3.5, 4.5, 6.0)]
    kept_canary, kept_stable = same_window(canary, stable)
    assert [s.at for s in kept_canary] == [3.0, 4.0, 5.0]
    assert [s.at for s in kept_stable] == [2.5, 3.5, 4.5]


def test_steady_part_drops_each_runs_ramp_up() -> None:
    run = {
        "green": [FakeSample(1.0, True, t) for t in (10.0, 11.0, 13.0)],
        "blue": [FakeSample(1.0, True, 12.5)],
    }
    kept = steady_part(run, ramp_s=2.0)
    assert [s.at for s in kept["green"]] == [13.0] and [s.at for s in kept["blue"]] == [12.5]


def test_interim_percentile_breach_on_few_samples_is_not_decisive() -> None:
    from immune_suite.analysis import analyse_canary_step
    from immune_suite.pipeline.canary import INTERIM_PERCENTILE_SAMPLES, decisive_failures

    stable = [FakeSample(20.0 + i % 9, True, float(i)) for i in range(300)]
    # one slow request among 20: a tail percentile over the SLO, the median unchanged
    canary = [FakeSample(20.0 + i % 9, True, float(i)) for i in range(19)] + [FakeSample(900.0, True, 19.0)]
    look = analyse_canary_step(100, canary, stable, STACK.slo, STACK.comparison)
    assert not look.passed
    assert decisive_failures(look, len(canary)) == []
    assert "canary_p99_ms" in decisive_failures(look, INTERIM_PERCENTILE_SAMPLES)
