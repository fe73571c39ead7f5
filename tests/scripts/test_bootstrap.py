"""scripts/bootstrap.sh decides when to (re)install from a pyproject.toml hash stamp; a stand-in uv
(IMMUNE_UV) records what the script asks of it, so these tests never touch the real virtualenv."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from immune_suite.paths import REPO_ROOT

BOOTSTRAP = REPO_ROOT / "scripts" / "bootstrap.sh"


def fake_venv(root: Path, exit_code: int = 0) -> tuple[Path, Path]:
    """A venv (its python exists) and a stand-in uv that appends its arguments to a log instead of
    installing anything, exiting with `exit_code`."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/usr/bin/env bash\nexit 0\n")
    python.chmod(0o755)
    calls = root / "calls.log"
    uv = root / "uv"
    uv.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\nexit {exit_code}\n')
    uv.chmod(0o755)
    return venv, calls


def run_bootstrap(venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BOOTSTRAP)],
        env={**os.environ, "IMMUNE_VENV": str(venv), "IMMUNE_UV": str(venv.parent / "uv")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pyproject_hash() -> str:
    return hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()


def test_installs_when_the_stamp_is_missing_then_stays_silent(tmp_path: Path) -> None:
    venv, calls = fake_venv(tmp_path)
    first = run_bootstrap(venv)
    assert first.returncode == 0, first.stderr
    python = venv / "bin" / "python"
    assert calls.read_text().split() == [
        "pip",
        "install",
        "-q",
        "--python",
        str(python),
        "-e",
        f"{REPO_ROOT}[dev]",
    ]
    assert (venv / ".pyproject.sha256").read_text().strip() == pyproject_hash()

    second = run_bootstrap(venv)
    assert second.returncode == 0
    assert second.stdout == "" and second.stderr == ""
    assert len(calls.read_text().splitlines()) == 1


def test_a_changed_pyproject_triggers_a_reinstall(tmp_path: Path) -> None:
    venv, calls = fake_venv(tmp_path)
    (venv / ".pyproject.sha256").write_text("stale\n")
    assert run_bootstrap(venv).returncode == 0
    assert len(calls.read_text().splitlines()) == 1


def test_a_failed_install_leaves_no_stamp_and_fails(tmp_path: Path) -> None:
    venv, _ = fake_venv(tmp_path, exit_code=1)
    completed = run_bootstrap(venv)
    assert completed.returncode != 0
    assert "pip install failed" in completed.stderr
    assert not (venv / ".pyproject.sha256").exists()
