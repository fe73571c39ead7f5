"""The workflow jobs' scripts (scripts/ci/): what each refuses before it changes anything.

Their good cases run against the local cluster (tests/cluster/test_promote.py builds the candidate with
build-image.sh and promotes it with promote.sh); here the bad input, each a clear message and exit 2,
and the security job (security-gate.sh) for real on this checkout: it passes (WARN while the vendored
advisory snapshot is accepted past its age), and fails when pip-audit has no advisories to audit with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from immune_suite.paths import REPO_ROOT

PROMOTE = REPO_ROOT / "scripts" / "ci" / "promote.sh"
BUILD = REPO_ROOT / "scripts" / "ci" / "build-image.sh"
DIGEST = "sha256:" + "ab" * 32
JOB_ENV = ("IMMUNE_IMAGE_DIGEST", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "KUBECONFIG_DATA")


def run(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in JOB_ENV and not k.startswith("IMMUNE_SIGNING")}
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {}, "--stack is required"),
        (("--stack", "staging"), {}, "--ref is required"),
        (("--stack", "nosuch", "--ref", "HEAD"), {}, "no stack config stacks/nosuch.yaml"),
        (("--stack", "staging", "--ref", "HEAD", "--bogus"), {}, "unknown argument '--bogus'"),
        (("--stack", "staging", "--ref", "HEAD"), {"IMMUNE_IMAGE_DIGEST": "latest"}, "IMMUNE_IMAGE_DIGEST"),
        (("--stack", "staging", "--ref", "HEAD"), {"IMMUNE_IMAGE_DIGEST": DIGEST}, "PULUMI_BACKEND_URL"),
        (
            ("--stack", "staging", "--ref", "HEAD"),
            {"IMMUNE_IMAGE_DIGEST": DIGEST, "PULUMI_BACKEND_URL": "file:///tmp"},
            "PULUMI_CONFIG_PASSPHRASE",
        ),
    ],
)
def test_promote_job_refuses_missing_input_before_anything_runs(
    args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    completed = run(PROMOTE, *args, env=env)
    assert completed.returncode == 2, completed.stderr
    assert says in completed.stderr
    assert "==> install" not in completed.stdout  # refused before the set-up


def test_promote_job_help_explains_usage_and_environment() -> None:
    completed = run(PROMOTE, "--help")
    assert completed.returncode == 0
    for word in ("--stack", "IMMUNE_IMAGE_DIGEST", "PULUMI_BACKEND_URL", "IMMUNE_SIGNING_KEY", "Exit codes"):
        assert word in completed.stdout


def promote_staging(tmp_path: Path, backend: Path) -> subprocess.CompletedProcess[str]:
    """promote.sh for staging with every required input, against the file backend `backend`."""
    return run(
        PROMOTE,
        *("--stack", "staging", "--ref", "HEAD", "--out", str(tmp_path / "out")),
        env={
            "IMMUNE_IMAGE_DIGEST": DIGEST,
            "PULUMI_BACKEND_URL": backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "x",
            "IMMUNE_STATE_DIR": str(tmp_path / "state"),
        },
    )


@pytest.mark.engine
def test_promote_job_stops_on_a_backend_it_cannot_use(tmp_path: Path, engine_env: dict[str, str]) -> None:
    completed = promote_staging(tmp_path, tmp_path / "no-such-backend")
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "cannot be used" in completed.stderr
    assert "immune-suite promote" not in completed.stdout


@pytest.mark.engine
def test_promote_job_without_its_signing_key_changes_nothing(
    tmp_path: Path, engine_env: dict[str, str]
) -> None:
    # staging signs with a configured key (stacks/keys/staging.pub): without the private half the
    # promotion refuses to start (exit 2) and nothing is verified or reported.
    backend = tmp_path / "backend"
    backend.mkdir()
    completed = promote_staging(tmp_path, backend)
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "IMMUNE_SIGNING_KEY" in completed.stderr
    assert "nothing was promoted" in completed.stderr
    assert not list(backend.rglob("*.json")), "no stack was created in the backend"
    assert not (tmp_path / "out" / "promotion-staging.html").exists()


def test_build_job_refuses_a_revision_that_is_not_a_commit() -> None:
    for bad in ("", "HEAD", "main; rm -rf /", "abc"):
        completed = run(BUILD, "--revision", bad)
        assert completed.returncode == 2, (bad, completed.stderr)
        assert "--revision must be a commit id" in completed.stderr


def test_build_job_refuses_two_image_repositories(tmp_path: Path) -> None:
    # One image repository name for the build and both stacks: a tree whose stacks disagree is refused.
    tree = tmp_path / "tree"
    (tree / "scripts" / "ci").mkdir(parents=True)
    shutil.copy2(BUILD, tree / "scripts" / "ci" / "build-image.sh")
    for stack, repository in (("staging", "ghcr.io/a/immune-core"), ("prod", "ghcr.io/b/immune-core")):
        (tree / f"Pulumi.{stack}.yaml").write_text(
            "config:\n  immune:settings:\n    imageBuild:\n"
            f"      enabled: false\n      repository: {repository}\n"
        )
    completed = run(tree / "scripts" / "ci" / "build-image.sh", "--revision", "0123456789abcdef")
    assert completed.returncode == 2
    assert "different image repositories (ghcr.io/a/immune-core, ghcr.io/b/immune-core)" in completed.stderr


def test_the_committed_stacks_name_one_image_repository() -> None:
    repositories = set()
    for stack in ("staging", "prod"):
        text = (REPO_ROOT / f"Pulumi.{stack}.yaml").read_text()
        after = text.split("imageBuild:", 1)[1]
        repositories.add(after.split("repository:", 1)[1].split()[0])
    assert len(repositories) == 1, repositories


# ---------------------------------------------------------------------------------------- security job

SECURITY = REPO_ROOT / "scripts" / "ci" / "security-gate.sh"


def test_security_job_scans_the_tree_and_writes_its_verdict(tmp_path: Path) -> None:
    """The security job as the workflow runs it, on this checkout: every scanner scanned something."""
    out = tmp_path / "security"
    proc = run(SECURITY, "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdict = json.loads((out / "security-verdict.json").read_text())
    # WARN, not PASS, while the vendored advisory snapshot is older than its age limit and accepted
    # (security/advisories/policy.yaml): the acceptance is in the verdict.
    assert verdict["status"] in ("pass", "warn"), verdict["summary"]
    assert verdict["status"] == "pass" or "accept" in json.dumps(verdict).lower(), verdict["summary"]
    assert list(out.rglob("*.sarif")), sorted(p.name for p in out.rglob("*"))


def test_security_job_fails_when_pip_audit_has_no_advisories(tmp_path: Path) -> None:
    """Bad case: the advisory database the job is pointed at is missing, so pip-audit audits nothing:
    the job fails (exit 1), it never passes on a scanner that scanned nothing."""
    out = tmp_path / "security"
    absent = tmp_path / "absent-advisory-db.json.xz"
    proc = run(SECURITY, "--out", str(out), env={"IMMUNE_ADVISORY_DB": str(absent)})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdict = json.loads((out / "security-verdict.json").read_text())
    assert verdict["status"] == "fail" and "pip-audit" in verdict["summary"], verdict["summary"]


def test_security_job_refuses_an_unknown_argument() -> None:
    proc = run(SECURITY, "--source", "/elsewhere")
    assert proc.returncode == 2 and "unknown argument '--source'" in proc.stderr
