"""The engine scripts/pulumi-engine.sh built: the pinned versions, laid out as the Automation API expects."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pulumi import automation as auto

from immune_suite.paths import REPO_ROOT

pytestmark = pytest.mark.engine

VERSIONS = REPO_ROOT / "scripts" / "pulumi-engine" / "versions.env"


def pinned() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in VERSIONS.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def test_automation_api_accepts_the_cli_without_skipping_its_version_check(
    engine_env: dict[str, str],
) -> None:
    assert "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK" not in engine_env
    assert "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK" not in os.environ
    command = auto.PulumiCommand(root=engine_env["PULUMI_ENGINE_DIR"], skip_version_check=False)
    assert str(command.version) == pinned()["PULUMI_CLI_VERSION"]


def test_plugins_live_in_the_engine_home_and_downloads_are_off(engine_env: dict[str, str]) -> None:
    engine_dir = Path(engine_env["PULUMI_ENGINE_DIR"])
    assert Path(engine_env["PULUMI_HOME"]) == engine_dir / "home"
    assert engine_env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert engine_env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    for binary in (
        "pulumi",
        "pulumi-language-python",
        "pulumi-language-python-exec",
        # Runs the program's dynamic providers (the engine-API image builder).
        "pulumi-resource-pulumi-python",
    ):
        assert os.access(engine_dir / "bin" / binary, os.X_OK), binary
    listing = subprocess.run(
        [str(engine_dir / "bin" / "pulumi"), "plugin", "ls", "--json"],
        env={**os.environ, **engine_env},
        capture_output=True,
        text=True,
        check=True,
    )
    plugins = {(p["kind"], p["name"]): p["version"] for p in json.loads(listing.stdout)}
    assert plugins == {("resource", "kubernetes"): pinned()["KUBERNETES_PLUGIN_VERSION"]}


def test_build_is_idempotent_and_cached(engine_env: dict[str, str]) -> None:
    script = REPO_ROOT / "scripts" / "pulumi-engine.sh"
    path = subprocess.run(["bash", str(script), "path"], capture_output=True, text=True, check=True)
    assert path.stdout.strip() == engine_env["PULUMI_ENGINE_DIR"]
    again = subprocess.run(["bash", str(script), "build"], capture_output=True, text=True, check=True)
    assert "building" not in again.stderr, again.stderr
