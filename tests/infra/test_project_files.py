"""The Pulumi project and stack files: the layout the CLI and helper scripts rely on, no plain secrets."""

from __future__ import annotations

import pytest
import yaml
from immune_infra.config import PROJECT_NAME, SECRET_KEYS, SETTINGS_KEY
from immune_infra.render import REPOSITORY_ROOT, stack_file


def test_project_file_points_at_the_program_and_the_repository_venv() -> None:
    project = yaml.safe_load((REPOSITORY_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT_NAME
    assert project["main"].rstrip("/") == "infra"
    assert (REPOSITORY_ROOT / project["main"] / "__main__.py").exists()
    runtime = project["runtime"]
    assert runtime["name"] == "python"
    assert (REPOSITORY_ROOT / runtime["options"]["virtualenv"] / "bin" / "python").exists()


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_stack_files_hold_one_settings_object_and_no_plain_secret(stack: str) -> None:
    config = yaml.safe_load(stack_file(stack).read_text())["config"]
    assert isinstance(config[f"{PROJECT_NAME}:{SETTINGS_KEY}"], dict)
    for key in SECRET_KEYS:
        value = config.get(f"{PROJECT_NAME}:{key}")
        # Absent (set per machine) or ciphertext from `pulumi config set --secret`; never plain text.
        assert value is None or (isinstance(value, dict) and set(value) == {"secure"}), key
    for key, value in config.items():
        if key.split(":", 1)[1] not in (SETTINGS_KEY, *SECRET_KEYS):
            assert isinstance(value, dict) and "secure" in value, f"unexpected plain config key {key}"
