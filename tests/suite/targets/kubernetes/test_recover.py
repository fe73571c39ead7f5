"""A `pulumi up` killed mid-update, recovered by `immune-suite recover` (issue 10 item 2), on the real engine.

The killed update leaves the stack locked and/or with pending operations in its checkpoint; the next
`up` then fails. `recover` cancels what is left of the update and refreshes the stack, clearing the
pending creates, after which an `up` converges again. Render mode: the engine, backend and provider are
real, the objects go to files (a cluster changes nothing of the engine's recovery).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import psutil
import pytest

from immune_suite.paths import REPO_ROOT
from immune_suite.targets.base import TargetError
from tests.support.engine import EngineProject

pytestmark = pytest.mark.engine

STACK = "prod"


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid`. Not just the process group: pulumi starts its plugins
    (the language host, providers) in process groups of their own, and a language host missed by
    `killpg` lived on as an orphan after the test (seen after a CI run)."""
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(proc.pid) == sid:
                proc.kill()


def kill_up_midway(engine_project: EngineProject, after: str, timeout_s: float = 300) -> str:
    """Start `pulumi up` of the stack in its own session and SIGKILL the whole session once its
    output shows `after` (the update is under way); the output seen so far."""
    env = {
        **os.environ,
        **engine_project.engine_env,
        "PULUMI_BACKEND_URL": engine_project.backend.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": engine_project.passphrase,
    }
    process = subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--stack", STACK],
        cwd=engine_project.dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    try:
        for line in process.stdout:
            seen.append(line)
            if after in line or time.monotonic() > deadline:
                break
    finally:
        kill_session(process.pid)
        process.wait(timeout=30)
    output = "".join(seen)
    assert after in output, output[-3000:]
    return output


def test_a_killed_up_is_recovered(engine_project: EngineProject) -> None:
    target = engine_project.target(STACK)
    target.ensure_running()
    # Nothing deployed yet: the killed update is the first, creating the stack's objects.
    kill_up_midway(engine_project, after="creating")
    # Bad case, what a killed update leaves: the next `up` is refused (the stack's lock, and when the
    # kill hit a checkpoint write, a truncated blob-attributes file: "failed to load checkpoint: EOF").
    with pytest.raises(TargetError, match=r"locked|failed to load checkpoint"):
        target.up()
    # `immune-suite recover`, as an operator runs it after the runner died.
    recovered = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "immune-suite"), "recover", "--stack", STACK, "--json"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "IMMUNE_PULUMI_PROJECT_DIR": str(engine_project.dir),
            "IMMUNE_PULUMI_RENDER_DIR": str(engine_project.root / "render"),
            "PULUMI_BACKEND_URL": engine_project.backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": engine_project.passphrase,
            "IMMUNE_STATE_DIR": str(engine_project.root / "suite-state"),
        },
        timeout=600,
        check=False,
    )
    assert recovered.returncode == 0, recovered.stdout[-3000:] + recovered.stderr[-3000:]
    report = json.loads(recovered.stdout)
    assert report["recovered"] is True and report["cancel"] == "ok", report
    assert report["refresh"] == "skipped: render mode"
    outcome = target.up()
    assert outcome.changes, outcome
    assert target.up().changed is False  # converged
    assert target.traffic() is not None


def test_recover_on_a_healthy_stack_changes_nothing(engine_project: EngineProject) -> None:
    target = engine_project.target(STACK)
    report = target.recover_stack()
    assert report["pending_operations_cleared"] == 0, report
    assert report["repaired"] == []
    assert target.up().changed is False
