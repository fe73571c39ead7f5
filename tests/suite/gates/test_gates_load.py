"""The load gate against a real HTTP server: locust headless in a subprocess, for a few seconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from immune_suite.gates.load import LoadRun, read_samples, run_load
from immune_suite.verdict import Status
from tests.suite.gates.gate_services import RunningService

# serial: the load gate judges latency percentiles over real load windows.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

SMALL = {"IMMUNE_LOAD_RPS_SCALE": "0.2", "IMMUNE_LOAD_WS_SUBSCRIBERS": "1"}


def _quiet(message: str, **_: object) -> None:
    print(message)


def test_baseline_run_passes_and_splits_samples_by_colour(
    mini_service: RunningService, tmp_path: Path
) -> None:
    run = run_load(mini_service.url, mini_service.token, tmp_path, "baseline", 6, _quiet, extra_env=SMALL)
    verdict = run.verdict
    assert verdict.status is Status.PASS, verdict.summary
    assert {m.name for m in verdict.measurements} >= {"http_req_duration p(95)", "http_req_failed rate"}
    assert all(m.value is not None for m in verdict.measurements)
    # Every response carried the colour header the service set.
    assert set(run.samples) == {"green"}
    assert len(run.samples["green"]) == verdict.details["totals"]["requests"] > 0
    assert all(s.ok for s in run.samples["green"])
    assert verdict.details["websocket_messages"] > 0
    kinds = {a.kind for a in verdict.artifacts}
    assert {"json", "csv", "jsonl"} <= kinds
    # The token never lands in an artifact.
    for artifact in verdict.artifacts:
        assert mini_service.token not in Path(artifact.path).read_text(encoding="utf-8", errors="replace")


def test_abort_on_fail_stops_a_failing_run_early(
    start_mini_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    service = start_mini_service(color="blue", error_ratio=0.5)
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(
        "thresholds:\n  http_req_failed:\n"
        "    - {threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: '1s'}\n"
    )
    run: LoadRun = run_load(
        service.url,
        service.token,
        tmp_path / "out",
        "baseline",
        60,
        _quiet,
        extra_env=SMALL,
        thresholds=thresholds,
    )
    verdict = run.verdict
    assert verdict.status is Status.FAIL
    aborted = verdict.details["aborted"]
    assert aborted is not None and aborted["thresholds"][0]["name"] == "http_req_failed rate"
    # It stopped long before the 60 s scenario would have ended.
    assert aborted["at_s"] < 60
    failed = [s for s in run.samples["blue"] if not s.ok]
    assert failed, "the injected 503s are recorded as failed samples"


def test_no_traffic_is_a_failure(tmp_path: Path) -> None:
    # Nothing listens on this port: every request fails, so the run cannot pass.
    run = run_load("http://127.0.0.1:9", "t", tmp_path, "baseline", 3, _quiet, extra_env=SMALL)
    assert run.verdict.status is Status.FAIL


def test_samples_file_tolerates_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text(
        json.dumps({"color": "blue", "latency_ms": 3.5, "ok": True, "at": 1.0})
        + "\n"
        + json.dumps({"color": "green", "latency_ms": 9, "ok": False, "at": 2.0})
        + "\n"
        + '{"color": "gre'
    )
    samples = read_samples(path)
    assert [s.latency_ms for s in samples["blue"]] == [3.5]
    assert samples["green"][0].ok is False
