"""The vendored advisory snapshot: built from a checkout, refreshed (or refused offline), judged for age."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from immune_suite.gates import advisory_snapshot
from immune_suite.gates.advisories import (
    ACCEPT_STALE_ENV,
    ADVISORY_DB_ENV,
    MAX_AGE_ENV,
    POLICY_FILE,
    AdvisoryDatabaseMissing,
    AdvisoryIndex,
    Snapshot,
    judge_age,
    locate_advisory_db,
)
from immune_suite.gates.scanners import pip_audit
from tests.suite.gates.gate_services import REPO_ROOT

ADVISORY = """id: PYSEC-2099-1
modified: 2099-01-02T00:00:00Z
published: 2099-01-01T00:00:00Z
aliases: [CVE-2099-0001]
details: demo
affected:
- package: {name: Demo_Pkg, ecosystem: PyPI}
  ranges:
  - type: ECOSYSTEM
    events: [{introduced: "0"}, {fixed: "1.5"}]
"""


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ADVISORY_DB_ENV, MAX_AGE_ENV, ACCEPT_STALE_ENV):
        monkeypatch.delenv(name, raising=False)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _checkout(tmp_path: Path) -> Path:
    """A tiny advisory-database git repository with one advisory."""
    repo = tmp_path / "advisory-database"
    (repo / "vulns" / "demo-pkg").mkdir(parents=True)
    (repo / "vulns" / "demo-pkg" / "PYSEC-2099-1.yaml").write_text(ADVISORY)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "advisories")
    return repo


def test_the_repository_carries_its_snapshot_with_attribution() -> None:
    snapshot = locate_advisory_db(REPO_ROOT)
    assert snapshot.path == REPO_ROOT / advisory_snapshot.SNAPSHOT_FILE
    assert snapshot.path.stat().st_size < 3 * 1024 * 1024  # compact
    notice = (snapshot.path.parent / "NOTICE").read_text()
    assert snapshot.commit in notice and snapshot.date.isoformat() in notice
    assert "CC-BY-4.0" in notice and advisory_snapshot.UPSTREAM_URL in notice
    assert "Attribution 4.0 International" in (snapshot.path.parent / "LICENSE").read_text()
    assert AdvisoryIndex(snapshot).package_count > 500


def test_a_database_named_but_missing_is_an_error_not_the_vendored_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMMUNE_ADVISORY_DB", str(tmp_path / "absent"))
    with pytest.raises(AdvisoryDatabaseMissing, match=r"IMMUNE_ADVISORY_DB=.*absent is neither"):
        locate_advisory_db(REPO_ROOT)
    # Good case: a snapshot file named there is the one used.
    monkeypatch.setenv("IMMUNE_ADVISORY_DB", str(REPO_ROOT / advisory_snapshot.SNAPSHOT_FILE))
    assert locate_advisory_db(tmp_path).path == REPO_ROOT / advisory_snapshot.SNAPSHOT_FILE


def test_build_reads_a_git_checkout_and_round_trips(tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    out = tmp_path / "snap" / "db.json.xz"
    info = advisory_snapshot.build(repo, out)
    assert info.commit == _git(repo, "rev-parse", "HEAD") and info.advisory_count == 1
    read, advisories = advisory_snapshot.read(out)
    assert read == info
    assert [a["id"] for a in advisories["demo-pkg"]] == ["PYSEC-2099-1"]
    first = hashlib.sha256(out.read_bytes()).hexdigest()
    advisory_snapshot.build(repo, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == first  # reproducible: same input, same bytes


def test_a_checkout_without_advisories_or_origin_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "vulns").mkdir(parents=True)
    with pytest.raises(advisory_snapshot.SnapshotError, match="neither a git checkout"):
        advisory_snapshot.build(tmp_path / "empty", tmp_path / "x.json.xz")
    (tmp_path / "bad.json.xz").write_bytes(b"not xz")
    with pytest.raises(advisory_snapshot.SnapshotError, match="unreadable"):
        advisory_snapshot.read(tmp_path / "bad.json.xz")


def _script_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "security" / "advisories").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "security" / "refresh-advisories.sh", tree / "security")
    shutil.copy(REPO_ROOT / advisory_snapshot.SNAPSHOT_FILE, tree / advisory_snapshot.SNAPSHOT_FILE)
    return tree


def _refresh(tree: Path, upstream: str) -> subprocess.CompletedProcess[str]:
    """security/refresh-advisories.sh of `tree`, fetching from `upstream` (a file:// URL)."""
    env = {**os.environ, "PYTHON": sys.executable, "IMMUNE_ADVISORY_UPSTREAM": upstream}
    return subprocess.run(
        ["bash", str(tree / "security" / "refresh-advisories.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_refresh_fails_clearly_when_the_upstream_cannot_be_reached(tmp_path: Path) -> None:
    tree = _script_tree(tmp_path)
    before = (tree / advisory_snapshot.SNAPSHOT_FILE).read_bytes()
    completed = _refresh(tree, f"file://{tmp_path}/nowhere")
    assert completed.returncode == 1
    assert "snapshot was NOT refreshed" in completed.stderr and "2024-10-10" in completed.stderr
    assert (tree / advisory_snapshot.SNAPSHOT_FILE).read_bytes() == before


def test_refresh_rebuilds_from_the_upstream_repository(tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    tree = _script_tree(tmp_path)
    completed = _refresh(tree, f"file://{repo}")
    assert completed.returncode == 0, completed.stderr
    info, _ = advisory_snapshot.read(tree / advisory_snapshot.SNAPSHOT_FILE)
    assert info.commit == _git(repo, "rev-parse", "HEAD") and info.advisory_count == 1
    assert info.commit in (tree / "security" / "advisories" / "NOTICE").read_text()


# --- the age rule ---------------------------------------------------------------------------------------

SNAP = Snapshot(path=Path("x"), commit="3ccb612573e2511ab5cad7dafecd838605c80cda", date=date(2024, 10, 10))


def _policy(root: Path, text: str) -> Path:
    (root / POLICY_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / POLICY_FILE).write_text(text)
    return root


def test_a_recent_snapshot_passes_and_an_old_one_fails(tmp_path: Path) -> None:
    fresh = judge_age(SNAP, SNAP.date + timedelta(days=90), tmp_path)
    assert fresh.passed and not fresh.stale and "2024-10-10" in fresh.describe()
    old = judge_age(SNAP, date(2026, 11, 30), tmp_path)
    assert not old.passed and old.age_days == 781 and "older than 90 days" in (old.error or "")


def test_the_age_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(tmp_path, "max_age_days: 30\n")
    assert not judge_age(SNAP, SNAP.date + timedelta(days=31), tmp_path).passed
    monkeypatch.setenv(MAX_AGE_ENV, "1000")
    assert judge_age(SNAP, date(2026, 11, 30), tmp_path).passed


def test_an_old_snapshot_passes_only_when_accepted_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = date(2026, 11, 30)
    _policy(tmp_path, "accept_stale: {commit: 3ccb612573e2, reason: offline here, expires: 2026-12-31}\n")
    accepted = judge_age(SNAP, today, tmp_path)
    assert accepted.passed and accepted.accepted == {
        "by": str(POLICY_FILE),
        "reason": "offline here",
        "expires": "2026-12-31",
    }
    assert "ACCEPTED" in accepted.describe()
    assert not judge_age(SNAP, date(2027, 1, 1), tmp_path).passed  # the acceptance expired
    other = Snapshot(path=Path("x"), commit="abcdef0123", date=SNAP.date)
    assert "not abcdef0123" in (judge_age(other, today, tmp_path).error or "")  # for another snapshot
    _policy(tmp_path, "accept_stale: {commit: 3ccb612573e2, reason: ' ', expires: 2026-12-31}\n")
    with pytest.raises(ValueError, match="reason"):
        judge_age(SNAP, today, tmp_path)
    _policy(tmp_path, "max_age_days: 90\n")
    monkeypatch.setenv(ACCEPT_STALE_ENV, "release freeze, reviewed by ops")
    assert judge_age(SNAP, today, tmp_path).accepted == {
        "by": ACCEPT_STALE_ENV,
        "reason": "release freeze, reviewed by ops",
    }


def test_pip_audit_fails_on_an_old_snapshot_that_nobody_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pip_audit.SOURCE_ENV, "snapshot")
    source = tmp_path / "src"
    source.mkdir()
    (source / "requirements.lock").write_text(f"idna==3.20 --hash=sha256:{'0' * 64}\n")
    result = pip_audit.scan(source, tmp_path / "out", today=date(2026, 11, 30))
    assert not result.passed
    assert result.error and "2024-10-10" in result.error and "older than 90 days" in result.error
