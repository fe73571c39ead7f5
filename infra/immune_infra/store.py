"""A one-pod data store (PostgreSQL, Redis): its Service, the address clients use, its Secret and its
StatefulSet, declared the same way for each so that a fix to one reaches both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import StackSettings
from immune_infra.workload import service_address, single_pod_statefulset


@dataclass(frozen=True)
class StoreSpec:
    """What tells one store from another: its Service (`service_name`, serving `port_name` on `port` and
    the exporter's `metrics` on `exporter_port`), its Secret `secret_name`, its pods' labels and pod spec,
    and its data volume (`storage`, a Kubernetes quantity such as "10Gi", of `storage_class`)."""

    service_name: str
    secret_name: str
    port_name: str
    port: int
    exporter_port: int
    labels: dict[str, str]
    pod_spec: k8s.core.v1.PodSpecArgsDict
    storage: str
    storage_class: str | None


class StoreComponent(pulumi.ComponentResource):
    """The component of one store; a subclass's constructor describes it and calls `_declare_store`."""

    secret_name: str
    url_key: str
    service: k8s.core.v1.Service
    host: pulumi.Output[str]
    secret: k8s.core.v1.Secret
    statefulset: k8s.apps.v1.StatefulSet

    def _declare_store(
        self,
        name: str,
        spec: StoreSpec,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        provider: k8s.Provider,
        secret_data: Callable[[pulumi.Output[str]], Mapping[str, pulumi.Input[str]]],
    ) -> None:
        """Declares the store's resources as children, named `<name>-service`, `<name>-auth` and
        `<name>-statefulset`, and registers `host` as the output. `secret_data(host)` gives the Secret's
        string data once the host is known (a DNS name, or the Service's ClusterIP without cluster DNS:
        settings.cluster.dns); the StatefulSet waits for the Secret, which its pods read at start."""
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": spec.service_name, "namespace": namespace, "labels": spec.labels},
            spec={
                "selector": spec.labels,
                "ports": [
                    {"name": spec.port_name, "port": spec.port, "target_port": spec.port_name},
                    {"name": "metrics", "port": spec.exporter_port, "target_port": "metrics"},
                ],
            },
            opts=child,
        )
        self.host = service_address(self.service, spec.service_name, settings.namespace, settings.cluster.dns)
        self.secret = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata={"name": spec.secret_name, "namespace": namespace, "labels": spec.labels},
            type="Opaque",
            string_data=dict(secret_data(self.host)),
            opts=child,
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={"name": spec.service_name, "namespace": namespace, "labels": spec.labels},
            spec=single_pod_statefulset(
                spec.service_name,
                spec.labels,
                spec.pod_spec,
                settings.cluster.persistent_volumes,
                spec.storage,
                spec.storage_class,
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.secret]),
        )
        self.register_outputs({"host": self.host})
