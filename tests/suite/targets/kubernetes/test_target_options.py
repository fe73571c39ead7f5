"""How a pipeline stack config (stacks/<name>.yaml) becomes Kubernetes target options (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from immune_suite.paths import REPO_ROOT
from immune_suite.stack_config import load_stack
from immune_suite.targets.base import Target, TargetError
from immune_suite.targets.factory import make_target
from immune_suite.targets.kubernetes import KubernetesTarget, KubernetesTargetOptions


def test_factory_builds_a_kubernetes_target_for_the_staging_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMMUNE_PULUMI_RENDER_DIR", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///srv/pulumi-state")
    target = make_target(load_stack("staging"))
    assert isinstance(target, KubernetesTarget) and isinstance(target, Target)
    assert target.options.stack == "staging"
    assert target.options.project_dir == REPO_ROOT
    assert target.options.backend_url == "file:///srv/pulumi-state"
    assert target.options.render_dir is None


def test_render_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMMUNE_PULUMI_RENDER_DIR", str(tmp_path))
    target = make_target(load_stack("prod"))
    assert isinstance(target, KubernetesTarget)
    assert target.options.render_dir == tmp_path / "prod"


def test_only_the_program_stacks_are_accepted() -> None:
    with pytest.raises(TargetError, match="unknown Kubernetes stack"):
        KubernetesTarget(KubernetesTargetOptions(stack="local"))
