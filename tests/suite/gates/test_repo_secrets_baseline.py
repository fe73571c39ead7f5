"""The repository passes its own secrets scan: moving or adding files keeps `.secrets.baseline` current.

A stale baseline (entries under old paths) makes every promotion of a clean clone fail the security gate.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from immune_suite.gates.scanners.secrets import scan
from immune_suite.paths import REPO_ROOT


def test_the_tree_has_no_secret_outside_the_baseline(tmp_path: Path) -> None:
    result = scan(REPO_ROOT, tmp_path)
    assert result.error is None
    assert result.details["new"] == [], "run security/update-secrets-baseline.sh and audit the new entries"


def test_a_moved_file_with_an_audited_line_is_new_again(tmp_path: Path) -> None:
    """Bad case: the baseline is keyed by path, so a file moved without refreshing it is reported."""
    tree = tmp_path / "tree"
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    shutil.copy2(REPO_ROOT / ".secrets.baseline", tree / ".secrets.baseline")
    moved = tree / "moved" / "place.py"
    moved.parent.mkdir()
    audited = 'DB = "postgresql://user:hunter2hunter2@db/app"\n'  # pragma: allowlist secret
    moved.write_text(audited, encoding="utf-8")
    subprocess.run(["git", "-C", str(tree), "add", "-A"], check=True)
    result = scan(tree, tmp_path / "out")
    assert result.details["new"], result.summary
