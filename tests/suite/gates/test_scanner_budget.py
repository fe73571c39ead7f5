"""A scanner past its time budget fails its gate with the reason; it never hangs the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from immune_suite.gates.scanners import run_tool, schemathesis


def test_a_scanner_past_its_budget_is_killed_and_says_why(tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    completed = run_tool([sys.executable, "-c", "import time; time.sleep(30)"], log, timeout_s=0.5)
    assert completed.returncode == 124
    assert "did not finish within its budget" in completed.stderr
    assert "exit 124" in log.read_text()


def test_api_fuzz_of_an_unreachable_candidate_within_a_tiny_budget_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schemathesis.BUDGET_ENV, "1")
    # Nothing listens on this port: schemathesis keeps waiting for the schema past the budget.
    result = schemathesis.scan("http://127.0.0.1:9", "token", tmp_path)
    assert result.error is not None
    assert not result.passed
