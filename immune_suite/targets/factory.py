"""Choose the `Target` implementation a stack config names."""

from __future__ import annotations

import importlib

from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import Target


def make_target(stack: StackConfig) -> Target:
    if stack.target == "local":
        from immune_suite.targets.local import LocalTarget

        return LocalTarget(stack)
    # Kubernetes stacks: implemented in immune_suite/targets/kubernetes.py (driven by the Pulumi program).
    module = importlib.import_module("immune_suite.targets.kubernetes")
    target: Target = module.KubernetesTarget(stack)
    return target
