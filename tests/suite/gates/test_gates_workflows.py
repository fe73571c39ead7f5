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
    assert any("scripts/ci/security-gate.sh" in run for run in security_runs)
    # With a network, the current upstream advisory database replaces the vendored snapshot.
    steps = _steps(ci["jobs"]["security"])
    assert {"repo", "advisory-database"} <= {s.get("with", {}).get("path") for s in steps}
    gate = next(s for s in steps if "scripts/ci/security-gate.sh" in s.get("run", ""))
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
        if "scripts/ci/build-image.sh" in s.get("run", "") or "build-push-action" in str(s.get("uses", ""))
    ]
    assert [name for name, _ in builds] == ["build"], "the image is built exactly once"
    assert builds[0][1]["id"] == "image"
    assert jobs["build"]["outputs"]["digest"] == "${{ steps.image.outputs.digest }}"
    for stack in ("staging", "prod"):
        env = jobs[stack]["env"]
        assert env["IMMUNE_IMAGE_DIGEST"] == "${{ needs.build.outputs.digest }}"
        runs = " ".join(s.get("run", "") for s in _steps(jobs[stack]))
        assert f"scripts/ci/promote.sh --stack {stack}" in runs
        # The shared state backend, the secrets provider and the stack's signing key reach the job.
        assert env["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
        assert env["IMMUNE_SIGNING_KEY"] == f"${{{{ secrets.IMMUNE_SIGNING_KEY_{stack.upper()} }}}}"
        assert env["KUBECONFIG_DATA"] == f"${{{{ secrets.KUBECONFIG_{stack.upper()} }}}}"


def test_jobs_call_the_projects_scripts_and_hold_no_logic() -> None:
    """Every `run:` is one call of a script under scripts/ (runnable locally), never steps in YAML."""
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, job in _load(path.name)["jobs"].items():
            for step in _steps(job):
                run = step.get("run")
                if run is None:
                    continue
                lines = [line for line in run.strip().splitlines() if line.strip()]
                assert len(lines) == 1 and "&&" not in run and ";" not in run, f"{path.name}:{name}: {run!r}"
                assert "bash scripts/" in run, f"{path.name}:{name}: {run!r}"
                script = REPO_ROOT / run.split("bash ", 1)[1].split()[0]
                assert script.is_file(), f"{path.name}:{name}: {script} does not exist"


def test_jobs_that_build_the_engine_set_up_go_from_the_modules_version() -> None:
    """The Pulumi engine (and the cluster) build from Go modules: those jobs install Go first."""
    for workflow, job_name in (("ci.yml", "test"), ("promote.yml", "staging"), ("promote.yml", "prod")):
        steps = _steps(_load(workflow)["jobs"][job_name])
        go = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-go")]
        assert go, f"{workflow}:{job_name} has no actions/setup-go"
        version_file = go[0]["with"]["go-version-file"].removeprefix("repo/")
        assert (REPO_ROOT / version_file).is_file()
        assert "\ngo " in "\n" + (REPO_ROOT / version_file).read_text()


def test_no_job_assumes_root() -> None:
    """Root is asked for where the host is changed (the cluster phase of the tests), never assumed."""
    test = _load("ci.yml")["jobs"]["test"]
    runs = [s["run"] for s in _steps(test) if "run" in s]
    assert any(run.startswith("sudo ") and "scripts/test.sh" in run for run in runs), runs
    promote = _load("promote.yml")["jobs"]
    for job in ("build", "staging", "prod"):
        assert not any(s.get("run", "").startswith("sudo") for s in _steps(promote[job])), job


def test_the_image_repository_is_the_programs() -> None:
    """One repository name: the build job pushes where the program deploys from (no second name here)."""
    promote = _load("promote.yml")
    text = (WORKFLOWS / "promote.yml").read_text()
    assert "IMAGE" not in promote.get("env", {})
    assert "ghcr.io/${{ github.repository }}" not in text
    build = next(s for s in _steps(promote["jobs"]["build"]) if "build-image.sh" in s.get("run", ""))
    assert (
        "--repository" not in build["run"]
    )  # build-image.sh reads Pulumi.<stack>.yaml's imageBuild.repository


def test_prod_waits_for_a_manual_approval() -> None:
    jobs = _load("promote.yml")["jobs"]
    assert jobs["staging"]["environment"]["name"] == "staging"
    assert jobs["prod"]["environment"]["name"] == "production"
    runs = " ".join(s.get("run", "") for s in _steps(jobs["prod"]))
    assert "--approve" in runs


def test_one_promotion_per_stack_at_a_time_whatever_the_branch() -> None:
    document = _load("promote.yml")
    assert "concurrency" not in document  # a per-ref group let two branches promote one stack at once
    for stack in ("staging", "prod"):
        group = document["jobs"][stack]["concurrency"]
        assert group == {"group": f"promote-{stack}", "cancel-in-progress": False}


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
