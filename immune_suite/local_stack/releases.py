"""Release directories: one exported source tree and its own virtualenv per tree hash.

Each colour runs its own copy of the candidate, so stable and candidate really are different code.
The venv is built in seconds: it installs only the candidate itself (`--no-deps`) and reaches the
third-party packages of the main `.venv` through a `.pth` line (read-only sharing of wheels).
"""

from __future__ import annotations

import fcntl
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

from immune_suite.source import SourceTree, export_source
from immune_suite.targets.base import TargetError

READY_MARKER = ".ready"


def _shared_site_packages() -> list[str]:
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def release_dir(releases_dir: Path, tree: str) -> Path:
    return releases_dir / tree[:16]


def service_binary(release: Path) -> Path:
    return release / "venv" / "bin" / "immune-core"


def build_release(repo: Path, source: SourceTree, releases_dir: Path) -> Path:
    """Export `source` and install it into a private venv; reuse an existing build of the same tree."""
    target = release_dir(releases_dir, source.tree)
    if (target / READY_MARKER).exists():
        return target
    releases_dir.mkdir(parents=True, exist_ok=True)
    with open(releases_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two colours may ask for the same build at once
        if (target / READY_MARKER).exists():
            return target
        # Built in place (venv scripts hold absolute paths); the marker is written last, so a build
        # interrupted half-way is simply redone.
        shutil.rmtree(target, ignore_errors=True)
        export_source(repo, source.tree, target / "src")
        _make_venv(target)
        _install_candidate(target)
        (target / READY_MARKER).write_text(f"{source.tree}\n{source.version}\n", encoding="utf-8")
    return target


def _make_venv(release: Path) -> None:
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "venv", "--without-pip", str(release / "venv")], check=True, timeout=120
    )


def _install_candidate(release: Path) -> None:
    """Put the candidate's packages first on the venv's path, then the shared third-party packages.

    Equivalent to `pip install --no-deps` of the candidate without building a wheel: the package
    directories come from the candidate's own pyproject (`[tool.setuptools.packages.find] where`), and
    each `[project.scripts]` entry becomes a console script, as pip would generate it.
    """
    project = tomllib.loads((release / "src" / "pyproject.toml").read_text(encoding="utf-8"))
    find = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    where = find.get("where", ["."])
    source_dirs = [str((release / "src" / w).resolve()) for w in where]
    venv_site = next((release / "venv" / "lib").glob("python*/site-packages"))
    (venv_site / "_immune_release.pth").write_text(
        "\n".join([*source_dirs, *_shared_site_packages()]) + "\n", encoding="utf-8"
    )
    python = release / "venv" / "bin" / "python"
    for name, entry in project.get("project", {}).get("scripts", {}).items():
        module, _, func = entry.partition(":")
        script = release / "venv" / "bin" / name
        script.write_text(
            f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n", encoding="utf-8"
        )
        script.chmod(0o755)
    if not service_binary(release).exists():
        raise TargetError(f"the candidate at {release} declares no `immune-core` console script")
