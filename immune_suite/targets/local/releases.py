"""Release directories: one exported source tree and its own virtualenv per tree hash.

Each colour runs its own copy of the candidate, so stable and candidate really are different code. A
release installs what the image installs (app/Dockerfile), and nothing else: the third-party packages
exactly as locked in the candidate's own `requirements.lock` (`pip install --require-hashes`, the set the
security gate audited), then the candidate itself with `pip install --no-deps`. The locked packages go
into a dependency venv shared by every release with the same lock (keyed by the lock's sha256, under
`$IMMUNE_CACHE_DIR/deploy-deps/`); a release venv reaches it through a `.pth` line.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from immune_suite.source import SourceTree, export_source
from immune_suite.targets.base import TargetError

LOCK_FILE = "requirements.lock"
CACHE_ENV = "IMMUNE_CACHE_DIR"
READY_MARKER = ".ready"


def deps_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "active-immune-core") / "deploy-deps"


def release_dir(releases_dir: Path, tree: str) -> Path:
    return releases_dir / tree[:16]


def service_binary(release: Path) -> Path:
    return release / "venv" / "bin" / "immune-core"


def build_release(repo: Path, source: SourceTree, releases_dir: Path) -> Path:
    """Export `source` and install it into a private venv; reuse an existing build of the same tree.

    Raises TargetError when the candidate has no `requirements.lock` or its locked install fails.
    """
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
        deps = locked_dependencies(target / "src" / LOCK_FILE)
        _make_venv(target / "venv", with_pip=False)
        _install_candidate(target, deps)
        (target / READY_MARKER).write_text(f"{source.tree}\n{source.version}\n", encoding="utf-8")
    return target


def locked_dependencies(lock: Path, cache_dir: Path | None = None) -> Path:
    """The venv holding exactly `lock`, installed with `pip install --require-hashes` (built once per lock).

    pip refuses an entry without a matching hash and any dependency missing from the lock, so what runs
    is what the security gate audited. Returns the venv's directory; raises TargetError when it fails.
    """
    if not lock.exists():
        raise TargetError(
            f"the candidate has no {LOCK_FILE} (bash security/lock-requirements.sh): "
            "a deployment installs only locked, hashed dependencies"
        )
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    root = (cache_dir or deps_cache_dir()) / digest
    if (root / READY_MARKER).exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{digest}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if (root / READY_MARKER).exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        _make_venv(root, with_pip=True)
        shutil.copyfile(lock, root / LOCK_FILE)
        if _has_entries(lock):  # pip refuses an empty requirements file; nothing to install then
            _pip(
                root / "bin" / "python",
                "install",
                "--require-hashes",
                "--no-compile",
                "-r",
                str(root / LOCK_FILE),
                log=root / "install.log",
            )
        _pip(root / "bin" / "python", "check", log=root / "check.log")
        (root / READY_MARKER).write_text(f"{digest}\n", encoding="utf-8")
    return root


def _has_entries(lock: Path) -> bool:
    return any(
        line.strip() and not line.lstrip().startswith(("#", "-"))
        for line in lock.read_text(encoding="utf-8").splitlines()
    )


def _pip(python: Path, *args: str, log: Path, cwd: Path | None = None) -> None:
    completed = subprocess.run(  # noqa: S603 - fixed pip invocation
        [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    log.write_text(completed.stdout + completed.stderr, encoding="utf-8")
    if completed.returncode != 0:
        raise TargetError(
            f"pip {args[0]} failed (exit {completed.returncode}, log {log}): "
            f"{(completed.stdout + completed.stderr).strip()[-600:]}"
        )


def _make_venv(path: Path, with_pip: bool) -> None:
    command = [sys.executable, "-m", "venv", str(path)]
    if not with_pip:
        command.insert(3, "--without-pip")
    subprocess.run(command, check=True, timeout=300)  # noqa: S603


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _install_candidate(release: Path, deps: Path) -> None:
    """The release venv sees the locked packages, then gets the candidate with `pip install --no-deps`.

    `--no-build-isolation --no-index`: the build backend is the locked one (setuptools/wheel are in the
    lock), nothing is fetched. The dependency venv's pip runs with the release venv's interpreter, so
    the package lands in the release venv and its console scripts point at it.
    """
    (_site_packages(release / "venv") / "_immune_locked_deps.pth").write_text(
        f"{_site_packages(deps)}\n", encoding="utf-8"
    )
    _pip(
        release / "venv" / "bin" / "python",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-compile",
        str(release / "src"),
        log=release / "install.log",
        cwd=release,
    )
    # A dependency the candidate declares but its lock lacks fails here, not at the first import in service.
    _pip(release / "venv" / "bin" / "python", "check", log=release / "check.log")
    if not service_binary(release).exists():
        raise TargetError(f"the candidate at {release} declares no `immune-core` console script")
