"""Fixtures for the real Pulumi engine: a temporary project, a file backend and encrypted stack secrets.

Tests marked `engine` skip only when IMMUNE_SKIP_ENGINE=1; otherwise a missing engine is a failure
(build it with `scripts/pulumi-engine.sh build`, which scripts/test.sh does).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from immune_suite.paths import REPO_ROOT
from immune_suite.targets.base import TargetError
from immune_suite.targets.kubernetes import KubernetesTarget, KubernetesTargetOptions, engine_environment

STACKS = ("staging", "prod")
# The secrets the program requires (immune_infra.config.SECRET_KEYS), each set with `--secret`.
SECRET_KEYS = ("postgresPassword", "redisPassword", "apiTokens", "grafanaAdminPassword")


@pytest.fixture(scope="session")
def engine_env() -> dict[str, str]:
    if os.environ.get("IMMUNE_SKIP_ENGINE") == "1":
        pytest.skip("IMMUNE_SKIP_ENGINE=1: the Pulumi engine was not built")
    try:
        return engine_environment()
    except TargetError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def passphrase() -> str:
    """A fresh passphrase per run: the ciphertext in the temporary stack files is real, the key throwaway."""
    return secrets.token_urlsafe(24)


def make_project(root: Path) -> Path:
    """A copy of the Pulumi project: the real Pulumi.yaml and stack files, the program and venv linked."""
    project = root / "project"
    project.mkdir(parents=True)
    for name in ("Pulumi.yaml", *(f"Pulumi.{stack}.yaml" for stack in STACKS)):
        shutil.copy2(REPO_ROOT / name, project / name)
    for name in ("infra", "app", ".venv"):
        (project / name).symlink_to(REPO_ROOT / name, target_is_directory=True)
    return project


class EngineProject:
    """One temporary project with its own file backend; hands out targets for its stacks."""

    def __init__(self, root: Path, engine_env: dict[str, str], passphrase: str) -> None:
        self.root = root
        self.dir = make_project(root)
        self.backend = root / "state"
        self.backend.mkdir()
        self.engine_env = engine_env
        self.passphrase = passphrase
        self.plaintext_secrets: dict[str, dict[str, str]] = {}

    def target(self, stack: str, render_dir: Path | None = None) -> KubernetesTarget:
        options = KubernetesTargetOptions(
            stack=stack,
            project_dir=self.dir,
            backend_url=self.backend.as_uri(),
            render_dir=render_dir if render_dir is not None else self.root / "render" / stack,
            engine_env=self.engine_env,
            extra_env={"PULUMI_CONFIG_PASSPHRASE": self.passphrase},
        )
        target = KubernetesTarget(options)
        self._ensure_secrets(target)
        return target

    def _ensure_secrets(self, target: KubernetesTarget) -> None:
        """`pulumi config set --secret` for each secret the program requires (once per stack)."""
        if target.name in self.plaintext_secrets:
            return
        from pulumi import automation as auto

        values = {key: secrets.token_urlsafe(18) for key in SECRET_KEYS}
        # One token per role set the pipeline's clients need (immune_suite/targets/tokens.py).
        values["apiTokens"] = ",".join(
            f"{secrets.token_urlsafe(24)}:{roles}" for roles in ("ingest+read", "ingest+read+operate")
        )
        config = {key: auto.ConfigValue(value=value, secret=True) for key, value in values.items()}
        target.stack().set_all_config(config)
        self.plaintext_secrets[target.name] = values

    def stack_file(self, stack: str) -> Path:
        return self.dir / f"Pulumi.{stack}.yaml"


@pytest.fixture(scope="module")
def engine_project(
    tmp_path_factory: pytest.TempPathFactory, engine_env: dict[str, str], passphrase: str
) -> Iterator[EngineProject]:
    yield EngineProject(tmp_path_factory.mktemp("engine"), engine_env, passphrase)
