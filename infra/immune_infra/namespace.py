"""The stack's namespace: Pod Security Standards `restricted`, a ResourceQuota and a LimitRange."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import StackSettings
from immune_infra.workload import PART_OF, PART_OF_LABEL, child_options


class ImmuneNamespace(pulumi.ComponentResource):
    name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("immune:namespace:ImmuneNamespace", name, None, opts)
        namespace = _namespace(name, settings, child_options(self, provider))
        self.name = namespace.metadata.apply(lambda meta: meta.name or settings.namespace)
        self.quota = _quota(name, settings, self.name, child_options(self, provider))
        self.limit_range = _limit_range(name, self.name, child_options(self, provider))
        self.register_outputs({"name": self.name})


def _namespace(name: str, settings: StackSettings, opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
    """The namespace, enforcing (and auditing, warning on) Pod Security Standards `restricted`."""
    pss = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    pss |= {f"pod-security.kubernetes.io/{mode}-version": "latest" for mode in ("enforce", "audit", "warn")}
    return k8s.core.v1.Namespace(
        f"{name}-namespace",
        metadata={
            "name": settings.namespace,
            "labels": {
                **pss,
                PART_OF_LABEL: PART_OF,
                "immune.vertice.dev/environment": settings.environment,
            },
        },
        opts=opts,
    )


def _quota(
    name: str, settings: StackSettings, namespace: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> k8s.core.v1.ResourceQuota:
    """The stack's ceilings (settings.quota), and no LoadBalancer or NodePort Service."""
    quota = settings.quota
    return k8s.core.v1.ResourceQuota(
        f"{name}-quota",
        metadata={"name": "immune-quota", "namespace": namespace},
        spec={
            "hard": {
                "requests.cpu": quota.requests_cpu,
                "requests.memory": quota.requests_memory,
                "limits.cpu": quota.limits_cpu,
                "limits.memory": quota.limits_memory,
                "pods": str(quota.pods),
                "persistentvolumeclaims": str(quota.persistent_volume_claims),
                # Nothing here may be exposed outside the cluster except through the ingress.
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }
        },
        opts=opts,
    )


def _limit_range(
    name: str, namespace: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> k8s.core.v1.LimitRange:
    # Defaults for any container that would forget its resources (every one declared here sets them).
    return k8s.core.v1.LimitRange(
        f"{name}-limits",
        metadata={"name": "immune-limits", "namespace": namespace},
        spec={
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "500m", "memory": "512Mi"},
                    "default_request": {"cpu": "100m", "memory": "128Mi"},
                    "max": {"cpu": "4", "memory": "8Gi"},
                },
                {"type": "PersistentVolumeClaim", "max": {"storage": "200Gi"}},
            ]
        },
        opts=opts,
    )
