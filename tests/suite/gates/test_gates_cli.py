"""`python -m immune_suite.gates`: one gate alone, verdict JSON on stdout, exit status from the verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.suite.gates.gate_services import REPO_ROOT, RunningService


def _gates(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMMUNE_API_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "immune_suite.gates", "--json", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# This test is about the command line, not latency: the CI machine runs other phases beside it, so the
# latency limits are loosened; errors and "no request at all" still fail it.
CLI_THRESHOLDS = """
thresholds:
  http_req_duration: ["p(95)<5000"]
  http_req_failed: ["rate<0.001"]
  http_reqs: ["count>0"]
"""


# serial: locust on a starved machine sends nothing in a 4 s window, and "no data" fails.
@pytest.mark.slow
@pytest.mark.serial
def test_load_gate_from_the_command_line(mini_service: RunningService, tmp_path: Path) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(CLI_THRESHOLDS)
    out = tmp_path / "out"
    completed = _gates(
        "load",
        "--url",
        mini_service.url,
        "--out",
        str(out),
        "--duration",
        "4",
        "--thresholds",
        str(thresholds),
        token=mini_service.token,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    verdict = json.loads(completed.stdout)
    assert verdict["gate"] == "load" and verdict["status"] == "pass"
    assert json.loads((out / "load-verdict.json").read_text()) == verdict
    assert all(json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{"))
    assert mini_service.token not in completed.stdout + completed.stderr


@pytest.mark.slow
def test_load_gate_from_the_command_line_fails_on_a_service_that_is_down(tmp_path: Path) -> None:
    completed = _gates("load", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), "--duration", "3")
    assert completed.returncode == 1
    assert json.loads(completed.stdout)["status"] == "fail"


def test_a_missing_thresholds_file_is_refused_before_any_load(tmp_path: Path) -> None:
    completed = _gates(
        "load",
        "--url",
        "http://127.0.0.1:9",
        "--out",
        str(tmp_path),
        "--thresholds",
        str(tmp_path / "nope.yaml"),
    )
    assert completed.returncode == 2
    assert "nope.yaml: no such file" in completed.stderr
    assert not (tmp_path / "load-verdict.json").exists()


def test_a_failing_gate_exits_non_zero(tmp_path: Path) -> None:
    config = tmp_path / "chaos.json"
    config.write_text(json.dumps({"candidate_url": "http://127.0.0.1:9"}))
    completed = _gates("chaos", "--config", str(config), "--out", str(tmp_path / "out"), "no-such-experiment")
    assert completed.returncode == 1
    assert json.loads(completed.stdout)["status"] == "fail"
