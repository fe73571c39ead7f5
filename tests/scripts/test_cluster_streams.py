"""The cluster phase's streams share one cluster (tests/cluster/shared.py, scripts/test.sh cluster_phase):
what tells a pytest run that the cluster is shared, and which stacks of test_deploy.py it keeps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cluster.shared import SHARED_ENV, STACKS_ENV, kept_stacks, shared_snapshot

REPO = Path(__file__).resolve().parents[2]


def test_no_variable_means_the_session_owns_its_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert shared_snapshot() is None


def test_a_shared_cluster_gives_the_snapshot_taken_before_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    snap = {"links": ["lo", "eth0"], "mounts": ["/"], "iptables-filter": ["*filter", "COMMIT"]}
    path = tmp_path / "before.json"
    path.write_text(json.dumps(snap))
    monkeypatch.setenv(SHARED_ENV, str(path))
    assert shared_snapshot() == snap


@pytest.mark.parametrize("content", [None, "not json", '["links"]', '{"mounts": []}'])
def test_a_missing_or_foreign_snapshot_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "before.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(SHARED_ENV, str(path))
    with pytest.raises(RuntimeError, match="not a host snapshot"):
        shared_snapshot()


@pytest.mark.parametrize(
    ("value", "kept"), [("", None), ("staging", {"staging"}), (" prod , staging,", {"prod", "staging"})]
)
def test_stacks_kept(monkeypatch: pytest.MonkeyPatch, value: str, kept: set[str] | None) -> None:
    monkeypatch.setenv(STACKS_ENV, value)
    assert kept_stacks() == kept


def _collected(stacks: str) -> set[str]:
    """test_deploy.py's test ids pytest collects with IMMUNE_CLUSTER_STACKS=stacks (nothing runs)."""
    env = {"PATH": "/usr/bin:/bin", STACKS_ENV: stacks}
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
         "tests/cluster/test_deploy.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return {line for line in done.stdout.splitlines() if line.startswith("tests/cluster/")}


def test_each_stream_collects_only_its_stacks_half_of_test_deploy() -> None:
    both, staging, prod = _collected(""), _collected("staging"), _collected("prod")
    assert staging and prod
    assert all("[staging]" in test for test in staging)
    assert all("[prod]" in test for test in prod)
    assert staging | prod == both and not staging & prod
