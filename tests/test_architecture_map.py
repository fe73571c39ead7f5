"""docs/architecture.md is a map that holds: every top-level folder has a row in its Layout table, and
every repository path it names exists."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from immune_suite.paths import REPO_ROOT

MAP = REPO_ROOT / "docs" / "architecture.md"
_ROW = re.compile(r"^\| `([^`]+)/` \|", re.MULTILINE)
_CODE = re.compile(r"`([^`\s]+)`")
# A placeholder or pattern stands for many paths (`Pulumi.<stack>.yaml`, `services/*.sh`): not checked.
_PATTERN = re.compile(r"[<>*{}]|\.\.\.")


def top_level_folders(root: Path) -> set[str]:
    """The folders at `root` that git would keep: `.git` and what `.gitignore` names are left out."""
    ignore_file = root / ".gitignore"
    lines = ignore_file.read_text(encoding="utf-8").splitlines() if ignore_file.exists() else []
    ignored = [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]
    return {
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name != ".git" and not any(fnmatch.fnmatch(p.name, pat) for pat in ignored)
    }


def map_problems(text: str, root: Path) -> list[str]:
    """What the map gets wrong about the tree at `root`: folders without a Layout row, rows and paths
    that name nothing. A path is checked when it starts with a top-level folder (`infra/__main__.py`)."""
    folders = top_level_folders(root)
    rows = set(_ROW.findall(text))
    found = [f"top-level folder {name}/ has no row in the Layout table" for name in sorted(folders - rows)]
    found += [f"the Layout table names {name}/, which does not exist" for name in sorted(rows - folders)]
    for token in sorted(set(_CODE.findall(text))):
        path = token.rstrip("/")
        if path.split("/", 1)[0] in folders and "/" in path and not _PATTERN.search(path):
            if not (root / path).exists():
                found.append(f"names {token}, which does not exist")
    return found


def test_the_map_matches_the_tree() -> None:
    assert map_problems(MAP.read_text(encoding="utf-8"), REPO_ROOT) == []


def test_a_missing_row_or_a_stale_path_is_found(tmp_path: Path) -> None:
    (tmp_path / "app" / "core").mkdir(parents=True)
    (tmp_path / "tools").mkdir()
    (tmp_path / "out").mkdir()  # ignored below: not part of the tree
    (tmp_path / ".gitignore").write_text("/out/\n", encoding="utf-8")
    text = (
        "| path | what |\n|---|---|\n"
        "| `app/` | the service, `app/core/` and `app/gone.py` |\n"
        "| `old/` | moved away |\n"
        "Stacks: `app/<name>.yaml` (a pattern, not checked).\n"
    )
    assert map_problems(text, tmp_path) == [
        "top-level folder tools/ has no row in the Layout table",
        "the Layout table names old/, which does not exist",
        "names app/gone.py, which does not exist",
    ]
    fixed = "| `app/` | the service, `app/core/` |\n| `tools/` | tools |\n"
    assert map_problems(fixed, tmp_path) == []
