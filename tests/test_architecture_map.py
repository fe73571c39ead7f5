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


# A work-assignment label ("Helper D", "helper B2") says who did a piece, which a reader cannot use; the
# cell type "helper T" is not one.
_LABEL = re.compile(r"\b[Hh]elpers?\b(?! T\b)(?:\s+[A-Z]\d*\b)|\bother helpers\b|\bhelpers'")


def label_problems(text: str, name: str) -> list[str]:
    """The work-assignment labels in `text` (the document `name`), one line each."""
    return [
        f"{name}:{number}: {match.group(0)!r}"
        for number, line in enumerate(text.splitlines(), 1)
        for match in _LABEL.finditer(line)
    ]


def test_the_docs_carry_no_work_assignment_labels() -> None:
    documents = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    assert len(documents) > 5  # the walk reaches the docs
    found = [p for doc in documents for p in label_problems(doc.read_text(encoding="utf-8"), doc.name)]
    assert found == []


def test_a_work_assignment_label_is_found_and_the_helper_t_cell_is_not() -> None:
    bad = "Done by Helper D.\nhelper B2 moved it.\nShared with two other helpers.\n"
    assert label_problems(bad, "x.md") == [
        "x.md:1: 'Helper D'",
        "x.md:2: 'helper B2'",
        "x.md:3: 'other helpers'",
    ]
    good = "A helper T cell licenses B cells; helper T runs at stage 2.\nTest helpers live in support.py.\n"
    assert label_problems(good, "x.md") == []
