"""The project's Pulumi engine as the Automation API sees it (built by `scripts/pulumi-engine.sh`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from immune_suite.paths import PULUMI_ENGINE_SCRIPT
from immune_suite.targets.base import TargetError

ENGINE_SCRIPT = PULUMI_ENGINE_SCRIPT
# Render mode for pipeline runs without a cluster: manifests go to $IMMUNE_PULUMI_RENDER_DIR/<stack>.
RENDER_DIR_ENV = "IMMUNE_PULUMI_RENDER_DIR"


def engine_environment(script: Path = ENGINE_SCRIPT) -> dict[str, str]:
    """The environment that points the Automation API at the project's engine (PATH, PULUMI_HOME, ...).

    Raises `TargetError` when the engine has not been built (`scripts/pulumi-engine.sh build`).
    """
    bash = shutil.which("bash")
    if bash is None:
        raise TargetError("bash is needed to run scripts/pulumi-engine.sh")
    # Fixed script of this repository, arguments built here, no shell.
    status = subprocess.run([bash, str(script), "status"], capture_output=True, check=False)  # noqa: S603
    if status.returncode != 0:
        raise TargetError(f"the Pulumi engine is not built: run {script} build")
    out = subprocess.run(  # noqa: S603
        [bash, str(script), "env", "--plain"], capture_output=True, text=True, check=True
    )
    env: dict[str, str] = {}
    for line in out.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            env[name] = value
    return env
