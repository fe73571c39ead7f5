"""The instance launcher runs in its release's source tree (supervisord's directory): that tree, an older
release maybe, must not shadow this suite's `immune_suite` (a main job once failed so: the stable release
had the old `targets/local.py` module and its fresh baseline never started)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from immune_suite.targets.local.target import launcher_command

SHADOW = "raise ImportError('the release tree shadowed the suite')\n"


def _release_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "release" / "src"
    (tree / "immune_suite").mkdir(parents=True)
    (tree / "immune_suite" / "__init__.py").write_text(SHADOW)
    return tree


def _env_file(tmp_path: Path) -> Path:
    env_file = tmp_path / "instance.json"
    env_file.write_text(json.dumps({"IMMUNE_INSTANCE_ID": "blue-0"}))
    return env_file


def test_the_launcher_starts_from_a_release_tree_that_holds_another_immune_suite(tmp_path: Path) -> None:
    command = [*launcher_command(_env_file(tmp_path)), "/bin/sh", "-c", 'echo "$IMMUNE_INSTANCE_ID"']
    completed = subprocess.run(
        command, cwd=_release_tree(tmp_path), capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "blue-0"


def test_without_isolation_the_release_tree_would_shadow_the_suite(tmp_path: Path) -> None:
    # The same command without -P: the case the launcher guards against really fails.
    command = [arg for arg in launcher_command(_env_file(tmp_path)) if arg != "-P"]
    completed = subprocess.run(
        [*command, "/bin/true"],
        cwd=_release_tree(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    assert "shadowed the suite" in completed.stderr
