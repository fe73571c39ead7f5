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


@pytest.mark.slow
def test_load_gate_from_the_command_line(mini_service: RunningService, tmp_path: Path) -> None:
    completed = _gates(
        "load", "--url", mini_service.url, "--out", str(tmp_path), "--duration", "4", token=mini_service.token
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    verdict = json.loads(completed.stdout)
    assert verdict["gate"] == "load" and verdict["status"] == "pass"
    assert json.loads((tmp_path / "load-verdict.json").read_text()) == verdict
    assert all(json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{"))
    assert mini_service.token not in completed.stdout + completed.stderr


def test_a_failing_gate_exits_non_zero(tmp_path: Path) -> None:
    config = tmp_path / "chaos.json"
    config.write_text(json.dumps({"candidate_url": "http://127.0.0.1:9"}))
    completed = _gates("chaos", "--config", str(config), "--out", str(tmp_path / "out"), "no-such-experiment")
    assert completed.returncode == 1
    assert json.loads(completed.stdout)["status"] == "fail"
