"""Policy pack: the pure rules of immune_infra.policies, enforced by a real engine.

pulumi preview -s staging --policy-pack infra/policy_pack
"""

import sys
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

# The pack runs from its own folder; make the program's package importable without an install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from immune_infra.policies import POLICIES, Policy

KUBERNETES_PROVIDER_TYPE = "pulumi:providers:kubernetes"


def as_manifest(args: ResourceValidationArgs) -> dict[str, Any] | None:
    """Kubernetes resources' inputs are the object itself (apiVersion, kind, metadata, spec...)."""
    if not args.resource_type.startswith("kubernetes:") or args.resource_type == KUBERNETES_PROVIDER_TYPE:
        return None
    return dict(args.props)


def validation_policy(policy: Policy) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        manifest = as_manifest(args)
        if manifest is None:
            return
        for message in policy.rule(manifest):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=policy.name,
        description=policy.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


PolicyPack(
    name="active-immune-core",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[validation_policy(policy) for policy in POLICIES],
)
