"""Choose the `Target` implementation a stack config names."""

from __future__ import annotations

import importlib
from pathlib import Path

from immune_suite.paths import REPO_ROOT
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Target


def make_target(stack: StackConfig, repo: Path = REPO_ROOT) -> Target:
    """`repo` is the git checkout candidates come from (the local stack builds releases from it)."""
    if stack.target == "local":
        from immune_suite.targets.local import LocalTarget

        return LocalTarget(stack, repo=repo)
    # Kubernetes stacks: implemented in immune_suite/targets/kubernetes/ (driven by the Pulumi program).
    module = importlib.import_module("immune_suite.targets.kubernetes")
    target: Target = module.KubernetesTarget(stack)
    return target
