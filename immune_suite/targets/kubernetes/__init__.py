"""The Kubernetes target (`staging`, `prod`): the Pulumi program driven through the Automation API.

`target.py` holds the target, `engine.py` finds the project's Pulumi engine, `config_tree.py` edits
dotted stack-config keys.
"""

from immune_suite.targets.kubernetes.engine import ENGINE_SCRIPT, RENDER_DIR_ENV, engine_environment
from immune_suite.targets.kubernetes.target import (
    KubernetesTarget,
    KubernetesTargetOptions,
    UpOutcome,
    describe,
    options_for_stack,
)

__all__ = [
    "ENGINE_SCRIPT",
    "RENDER_DIR_ENV",
    "KubernetesTarget",
    "KubernetesTargetOptions",
    "UpOutcome",
    "describe",
    "engine_environment",
    "options_for_stack",
]
