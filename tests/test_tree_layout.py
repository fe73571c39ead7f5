"""The test tree mirrors the code and uses one import mode (docs/architecture.md, "tests/")."""

from __future__ import annotations

import ast

from immune_suite.paths import REPO_ROOT

TESTS = REPO_ROOT / "tests"


def test_every_test_folder_is_a_package() -> None:
    folders = [p for p in TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))]
    missing = [str(p.relative_to(REPO_ROOT)) for p in folders if not (p / "__init__.py").exists()]
    assert missing == []


def test_helpers_are_imported_by_their_package_path() -> None:
    """`from tests.<path> import ...` only: no relative imports, none from a conftest or a bare sibling."""
    siblings = {p.stem for p in TESTS.rglob("*.py")}
    offenders: list[str] = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level or module.endswith("conftest") or module.split(".")[0] in siblings:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}: from {'.' * node.level}{module}")
    assert offenders == []


def test_targets_are_one_package_each() -> None:
    targets = REPO_ROOT / "immune_suite" / "targets"
    assert (targets / "local" / "target.py").exists()
    assert (targets / "kubernetes" / "target.py").exists()
    assert not (REPO_ROOT / "immune_suite" / "local_stack").exists()
    assert not (targets / "local.py").exists() and not (targets / "kubernetes.py").exists()


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in support modules (`support.py`, `kafka_tools.py`, `tests/support/`,
    `tests/suite/local_stack.py`), never in a `test_*.py` module that another one imports."""
    offenders: list[str] = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1].startswith("test_"):
                offenders.append(f"{path.relative_to(REPO_ROOT)}: from {node.module}")
    assert offenders == []
