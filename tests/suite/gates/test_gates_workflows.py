"""The GitHub Actions workflows: tests and security gate first, one image build, the same digest to
staging then prod, prod behind a manual approval."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.suite.gates.gate_services import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CACHE = Path(os.environ.get("IMMUNE_CACHE_DIR", Path.home() / ".cache" / "active-immune-core"))
ACTIONLINT = shutil.which("actionlint") or str(CACHE / "tools" / "actionlint")
INSTALL_ACTIONLINT = "bash scripts/actionlint.sh"


def _load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def _needs(job: dict[str, Any]) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def test_ci_runs_the_tests_and_the_security_gate() -> None:
    ci = _load("ci.yml")
    assert "workflow_call" in ci["on"] and "pull_request" in ci["on"]
    test_runs = [s.get("run", "") for s in _steps(ci["jobs"]["test"])]
    assert any("scripts/test.sh" in run for run in test_runs)
    security_runs = [s.get("run", "") for s in _steps(ci["jobs"]["security"])]
    assert any("immune_suite.gates security" in run for run in security_runs)
    # With a network, the current upstream advisory database replaces the vendored snapshot.
    steps = _steps(ci["jobs"]["security"])
    assert {"repo", "advisory-database"} <= {s.get("with", {}).get("path") for s in steps}
    gate = next(s for s in steps if "immune_suite.gates security" in s.get("run", ""))
    assert gate["env"]["IMMUNE_ADVISORY_DB"].endswith("/advisory-database")


def test_promote_builds_once_and_ships_the_same_digest_to_staging_then_prod() -> None:
    promote = _load("promote.yml")
    jobs = promote["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert _needs(jobs["build"]) == {"ci"}
    assert _needs(jobs["staging"]) == {"build"}
    assert _needs(jobs["prod"]) == {"build", "staging"}
    builds = [
        (name, s)
        for name, job in jobs.items()
        for s in _steps(job)
        if str(s.get("uses", "")).startswith("docker/build-push-action")
    ]
    assert [name for name, _ in builds] == ["build"], "the image is built exactly once"
    assert jobs["build"]["outputs"]["digest"] == "${{ steps.image.outputs.digest }}"
    for stack in ("staging", "prod"):
        assert jobs[stack]["env"]["IMMUNE_IMAGE_DIGEST"] == "${{ needs.build.outputs.digest }}"
        runs = " ".join(s.get("run", "") for s in _steps(jobs[stack]))
        assert f"immune-suite promote --stack {stack}" in runs
        assert f"immune-suite verify latest --stack {stack}" in runs


def test_prod_waits_for_a_manual_approval() -> None:
    jobs = _load("promote.yml")["jobs"]
    assert jobs["staging"]["environment"]["name"] == "staging"
    assert jobs["prod"]["environment"]["name"] == "production"
    runs = " ".join(s.get("run", "") for s in _steps(jobs["prod"]))
    assert "--approve" in runs
    assert _load("promote.yml")["concurrency"]["cancel-in-progress"] is False


def test_no_secret_is_expanded_inside_a_shell_script() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        document = _load(path.name)
        for job in document["jobs"].values():
            for step in _steps(job):
                assert "secrets." not in step.get("run", ""), f"{path.name}: {step.get('name')}"


def test_actionlint_accepts_the_workflows() -> None:
    # A linter that is missing has checked nothing: that fails, never skips (scripts/test.sh installs it).
    assert Path(ACTIONLINT).exists(), f"actionlint not installed: run {INSTALL_ACTIONLINT}"
    completed = subprocess.run(
        [ACTIONLINT, *map(str, sorted(WORKFLOWS.glob("*.yml")))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """Bad case: the linter really reads what it is given (an undefined context, a job needing no job)."""
    assert Path(ACTIONLINT).exists(), f"actionlint not installed: run {INSTALL_ACTIONLINT}"
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    needs: [missing]\n"
        "    steps:\n      - run: echo ${{ nosuchcontext.value }}\n"
    )
    completed = subprocess.run(
        [ACTIONLINT, str(broken)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode != 0
    assert "missing" in completed.stdout and "nosuchcontext" in completed.stdout, completed.stdout
