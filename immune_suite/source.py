"""The candidate's source: the working tree or a git ref, named by its git tree hash.

The tree hash is the local stack's "image digest": two releases with the same hash are the same
bits. For the working tree it is computed through a private, temporary index so the developer's
own index and staging area are never touched.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from immune_suite.targets.base import Release

WORKTREE = "WORKTREE"
TREE_PREFIX = "git-tree:"  # a local-stack release's digest: its source tree hash


@dataclass(frozen=True)
class SourceTree:
    ref: str  # a git ref, or WORKTREE
    commit: str  # the commit the tree is based on
    tree: str  # git tree hash of exactly what runs
    version: str

    @property
    def digest(self) -> str:
        return f"{TREE_PREFIX}{self.tree}"


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - fixed git binary, arguments built here
        ["git", "-C", str(repo), *args],  # noqa: S607
        check=True,
        capture_output=True,
        env=env,
        input=stdin,
    )
    return result.stdout.decode().strip()


def resolve_source(repo: Path, ref: str | None = None) -> SourceTree:
    """Name the candidate: `ref=None` means the working tree including untracked, non-ignored files."""
    commit = _git(repo, "rev-parse", "HEAD")
    if ref and ref != WORKTREE:
        commit = _git(repo, "rev-parse", f"{ref}^{{commit}}")
        tree = _git(repo, "rev-parse", f"{commit}^{{tree}}")
        return SourceTree(ref=ref, commit=commit, tree=tree, version=f"{commit[:10]}")
    tree = _worktree_tree(repo)
    head_tree = _git(repo, "rev-parse", "HEAD^{tree}")
    version = commit[:10] if tree == head_tree else f"{commit[:10]}+wt.{tree[:8]}"
    return SourceTree(ref=WORKTREE, commit=commit, tree=tree, version=version)


def _worktree_tree(repo: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="immune-index-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", "HEAD", env=env)
        # Stage everything git would show (tracked + untracked, minus .gitignore) in the private index.
        _git(repo, "add", "--all", "--", ".", env=env)
        return _git(repo, "write-tree", env=env)


def export_source(repo: Path, tree: str, destination: Path) -> None:
    """Write exactly the files of `tree` into `destination` (which must not exist yet)."""
    destination.mkdir(parents=True)
    archive = subprocess.run(  # noqa: S603
        ["git", "-C", str(repo), "archive", "--format=tar", tree],  # noqa: S607
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)  # noqa: S603,S607


def source_tree_of(repo: Path, release: Release) -> str:
    """The git tree a release was built from: its digest on the local stack (`git-tree:<hash>`); on
    image-based stacks the digest names the image (`sha256:...`) and the release's ref (the commit CI
    built it from, or WORKTREE) names the source. Raises subprocess.CalledProcessError for a ref git
    does not know."""
    if release.digest.startswith(TREE_PREFIX):
        return release.digest.removeprefix(TREE_PREFIX)
    return resolve_source(repo, None if release.ref == WORKTREE else release.ref).tree
