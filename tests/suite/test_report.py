"""The HTML report shows each canary step against the reference it was actually judged with."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from immune_suite.analysis import analyse_canary_step
from immune_suite.report import render_report, step_reference
from immune_suite.stack_config import StackConfig
from tests.suite.support import FakeSample

STACK = StackConfig.model_validate({"name": "unit"})


def _samples(median_ms: float, count: int, seed: int) -> list[FakeSample]:
    rng = np.random.default_rng(seed)
    return [
        FakeSample(float(v), True, 1000.0 + i * 0.01)
        for i, v in enumerate(rng.gamma(4.0, median_ms / 4, count))
    ]


def _record(reference: str) -> dict[str, Any]:
    verdict = analyse_canary_step(
        10,
        _samples(20.0, 800, 1),
        _samples(30.0, 800, 2),  # the reference: slower, so its figures cannot be mistaken for the canary's
        STACK.slo,
        STACK.comparison,
        reference=reference,
    )
    step = {"id": "canary-10", "kind": "canary", "status": "passed", "params": {"percent": 10}}
    return {"run_id": "r1", "outcome": "promoted", "stages": [{**step, "verdict": verdict.to_dict()}]}


def _rows(page: str, who: str) -> list[list[str]]:
    return [
        re.findall(r"<td>(.*?)</td>", row)
        for row in re.findall(rf"<tr><td>10%</td><td>{who}</td>.*?</tr>", page)
    ]


def test_a_step_judged_against_the_fresh_baseline_shows_the_baseline_figures() -> None:
    record = _record("baseline")
    details = record["stages"][0]["verdict"]["details"]
    assert "stable" not in details  # the case that used to be drawn as zeros
    name, summary = step_reference(record["stages"][0])
    assert name == "baseline" and summary == details["baseline"]
    page = render_report(record)
    (row,) = _rows(page, "baseline")
    assert row[2] == str(details["baseline"]["count"])
    assert float(row[4]) == float(f"{details['baseline']['percentiles_ms']['p95']:.4g}") > 0
    assert not _rows(page, "stable")


def test_a_step_judged_against_stable_is_labelled_stable() -> None:
    record = _record("stable")
    details = record["stages"][0]["verdict"]["details"]
    page = render_report(record)
    (row,) = _rows(page, "stable")
    assert float(row[4]) == float(f"{details['stable']['percentiles_ms']['p95']:.4g}") > 0
    assert not _rows(page, "baseline")


def test_a_figure_the_record_lacks_is_not_shown_as_zero() -> None:
    record = _record("baseline")
    del record["stages"][0]["verdict"]["details"]["baseline"]
    (row,) = _rows(render_report(record), "baseline")
    assert row[2:] == ["n/a"] * 5
