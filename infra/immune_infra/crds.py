"""The published CustomResourceDefinitions the stack's custom objects need, applied from infra/crds/.

infra/crds/ holds unchanged copies of the upstream files (infra/crds/NOTICE, fetched by
infra/crds/refresh.sh at the pins in cluster/versions.env):
- `gateway-api/`: the Gateway API standard channel (HTTPRoute, Gateway, GatewayClass, ...), applied when
  `routing.mode` is `gateway`;
- `prometheus-operator/`: ServiceMonitor and PrometheusRule, applied when `monitoring.mode` is `operator`.

CRDs are cluster-scoped and shared: staging and prod in one cluster both declare the same objects (the
provider's server-side apply lets both own identical fields), and they are `retain_on_delete`, because
deleting a CRD deletes every object of its kind in every namespace, the other stack's included. A cluster
whose operator or controller installs these CRDs itself (a Helm chart's own copies) sets
`crds.install: false`, so that two installers do not fight over one definition.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from immune_infra.config import StackSettings
from immune_infra.paths import REPOSITORY_ROOT

CRD_DIR = REPOSITORY_ROOT / "infra" / "crds"
GATEWAY_API = "gateway-api"
PROMETHEUS_OPERATOR = "prometheus-operator"
CRD_GROUPS = (GATEWAY_API, PROMETHEUS_OPERATOR)


@cache
def definitions(group: str) -> tuple[dict[str, Any], ...]:
    """Every CustomResourceDefinition vendored for `group`, in file order, exactly as published.

    Raises FileNotFoundError when the group's directory holds no definition (a broken checkout).
    """
    if group not in CRD_GROUPS:
        raise ValueError(f"unknown CRD group {group!r} (known: {', '.join(CRD_GROUPS)})")
    found: list[dict[str, Any]] = []
    for path in sorted((CRD_DIR / group).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                found.append(document)
    if not found:
        raise FileNotFoundError(f"no CustomResourceDefinition under {CRD_DIR / group} (run refresh.sh)")
    return tuple(found)


def definition_for(kind: str) -> dict[str, Any]:
    """The vendored CRD that defines `kind` (e.g. HTTPRoute); KeyError if none does."""
    for group in CRD_GROUPS:
        for document in definitions(group):
            if document["spec"]["names"]["kind"] == kind:
                return document
    raise KeyError(f"no vendored CustomResourceDefinition defines {kind}")


def openapi_schema(kind: str, version: str) -> dict[str, Any]:
    """`openAPIV3Schema` of `kind` at API `version` (e.g. "v1") from its vendored CRD."""
    for served in definition_for(kind)["spec"]["versions"]:
        if served["name"] == version:
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"the vendored {kind} CRD has no version {version}")


def groups_needed(settings: StackSettings) -> tuple[str, ...]:
    """The CRD groups whose kinds this stack declares (none with nginx routing and bundled monitoring)."""
    needed: list[str] = []
    if settings.routing.mode == "gateway":
        needed.append(GATEWAY_API)
    if settings.monitoring.mode == "operator":
        needed.append(PROMETHEUS_OPERATOR)
    return tuple(needed)


class CustomResourceDefinitions(pulumi.ComponentResource):
    """The CRDs of `groups_needed`, one `CustomResourceDefinition` resource per vendored definition."""

    definitions: list[k8s.apiextensions.v1.CustomResourceDefinition]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("immune:crds:CustomResourceDefinitions", name, None, opts)
        self.definitions = []
        groups = groups_needed(settings) if settings.crds.install else ()
        for group in groups:
            for document in definitions(group):
                crd_name = document["metadata"]["name"]
                self.definitions.append(
                    k8s.apiextensions.v1.CustomResourceDefinition(
                        f"{name}-{crd_name}",
                        metadata=document["metadata"],
                        spec=document["spec"],
                        opts=pulumi.ResourceOptions(parent=self, provider=provider, retain_on_delete=True),
                    )
                )
        self.register_outputs({"groups": list(groups)})
