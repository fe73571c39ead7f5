"""A local-stack release installs what the image installs: the locked, hashed set, then the package alone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from immune_suite.paths import REPO_ROOT
from immune_suite.source import resolve_source
from immune_suite.targets.base import TargetError
from immune_suite.targets.local.releases import build_release, locked_dependencies, service_binary
from tests.suite.targets.local.support import locked_build_backend


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def _demo_repo(tmp_path: Path, lock: str | None) -> Path:
    repo = tmp_path / "repo"
    (repo / "pkg" / "demo").mkdir(parents=True)
    (repo / "pkg" / "demo" / "__init__.py").write_text("def main() -> int:\n    print('hi')\n    return 0\n")
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0"\n[project.scripts]\nimmune-core = "demo:main"\n'
        '[tool.setuptools.packages.find]\nwhere = ["pkg"]\n'
    )
    if lock is not None:
        (repo / "requirements.lock").write_text(lock)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "one")
    return repo


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMUNE_CACHE_DIR", str(tmp_path / "cache"))


def test_a_candidate_without_a_lock_is_not_deployed(tmp_path: Path) -> None:
    repo = _demo_repo(tmp_path, lock=None)
    with pytest.raises(TargetError, match=r"no requirements\.lock"):
        build_release(repo, resolve_source(repo, "HEAD"), tmp_path / "releases")


def test_a_lock_entry_whose_hash_does_not_match_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"idna==3.20 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(TargetError, match=r"(?i)hash"):
        locked_dependencies(lock)


def test_the_package_is_installed_itself_without_dependencies(tmp_path: Path) -> None:
    repo = _demo_repo(tmp_path, lock=locked_build_backend())
    release = build_release(repo, resolve_source(repo, "HEAD"), tmp_path / "releases")
    output = subprocess.run([str(service_binary(release))], check=True, capture_output=True, text=True)
    assert output.stdout.strip() == "hi"
    probe = [str(release / "venv" / "bin" / "python"), "-c", "import demo; print(demo.__file__)"]
    where = subprocess.run(probe, check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(release / "venv")), where  # a real install, not the source tree on a path


@pytest.mark.slow
def test_the_real_service_runs_from_its_locked_dependencies(tmp_path: Path) -> None:
    release = build_release(REPO_ROOT, resolve_source(REPO_ROOT, "HEAD"), tmp_path / "releases")
    assert (
        "serve"
        in subprocess.run(
            [str(service_binary(release)), "--help"], check=True, capture_output=True, text=True
        ).stdout
    )
    probe = "import fastapi, immune_core; print(fastapi.__file__); print(immune_core.__file__)"
    fastapi_at, core_at = subprocess.run(
        [str(release / "venv" / "bin" / "python"), "-c", probe], check=True, capture_output=True, text=True
    ).stdout.split()
    assert fastapi_at.startswith(str(tmp_path / "cache" / "deploy-deps"))
    assert core_at.startswith(str(release / "venv"))
    # Exactly the lock's versions: every installed distribution in the dependency venv is a lock entry.
    deps = Path(fastapi_at).parents[4]
    frozen = subprocess.run(
        [str(deps / "bin" / "python"), "-m", "pip", "freeze", "--all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.lower()
    lock_text = (release / "src" / "requirements.lock").read_text().lower()
    locked = re.findall(r"^([a-z0-9_.-]+==[^ \\]+)", lock_text, re.M)
    norm = {re.sub(r"[-_.]+", "-", line) for line in frozen.split()}
    assert {re.sub(r"[-_.]+", "-", entry) for entry in locked} <= norm


def test_a_declared_dependency_missing_from_the_lock_is_not_deployed(tmp_path: Path) -> None:
    repo = _demo_repo(tmp_path, lock=locked_build_backend())
    pyproject = repo / "pyproject.toml"
    needs_idna = pyproject.read_text().replace('version = "0"', 'version = "0"\ndependencies = ["idna"]')
    pyproject.write_text(needs_idna)
    _git(repo, "commit", "-qam", "needs idna")
    with pytest.raises(TargetError, match=r"pip check failed[\s\S]*idna"):
        build_release(repo, resolve_source(repo, "HEAD"), tmp_path / "releases")


def test_the_image_installs_the_same_way() -> None:
    dockerfile = (REPO_ROOT / "app" / "Dockerfile").read_text()
    installs = re.findall(r"pip install[^\n&]*", dockerfile)
    assert installs == [
        "pip install --no-compile --require-hashes -r requirements.lock",
        "pip install --no-compile --no-deps --no-build-isolation --no-index . \\",
    ]
    assert "COPY requirements.lock" in dockerfile
