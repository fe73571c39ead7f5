"""NetworkPolicies: deny everything in the namespace, then admit only the flows the system needs.

The flows are data (`flows(settings)`), one entry per policy, so the tests can read the allowed
graph and the docs can print it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from immune_infra import kafka as kafka_module
from immune_infra import postgres as postgres_module
from immune_infra import redis as redis_module
from immune_infra.config import StackSettings, is_ipv4, split_host_port
from immune_infra.immune_app import APP_NAME, HTTP_PORT
from immune_infra.monitoring import PROMETHEUS_PORT
from immune_infra.workload import COMPONENT_LABEL, NAME_LABEL

Selector = dict[str, Any]

APP = {NAME_LABEL: APP_NAME, COMPONENT_LABEL: "api"}
MIGRATE = {NAME_LABEL: APP_NAME, COMPONENT_LABEL: "migrate"}
KAFKA = {NAME_LABEL: "kafka", COMPONENT_LABEL: "broker"}
KAFKA_TOPICS = {NAME_LABEL: "kafka", COMPONENT_LABEL: "topics"}
KAFKA_EXPORTER = {NAME_LABEL: "kafka-exporter"}
REDIS = {NAME_LABEL: "redis"}
POSTGRES = {NAME_LABEL: "postgres"}
PROMETHEUS = {NAME_LABEL: "prometheus"}
GRAFANA = {NAME_LABEL: "grafana"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def pods(match: dict[str, str]) -> Selector:
    return {"podSelector": {"matchLabels": match}}


def address(host: str) -> Selector:
    """An IPv4 address as a peer (/32). A DNS name cannot be a peer (policies match addresses, resolved
    by nobody here): any address, so only the rule's port limits it."""
    return {"ipBlock": {"cidr": f"{host}/32" if is_ipv4(host) else "0.0.0.0/0"}}


def namespace(name: str) -> Selector:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


@dataclass(frozen=True)
class Flow:
    """One NetworkPolicy: which pods it selects, who may reach them, and whom they may reach."""

    name: str
    pods: dict[str, str]
    ingress: list[tuple[list[Selector], list[int]]] = field(default_factory=list)
    egress: list[tuple[list[Selector], list[int]]] = field(default_factory=list)


def flows(settings: StackSettings) -> list[Flow]:
    operator_mode = settings.monitoring.mode == "operator"
    scrapers = [namespace(settings.monitoring.operator_namespace)] if operator_mode else [pods(PROMETHEUS)]
    routing = settings.routing
    # Traffic enters through the ingress controller, or the Gateway's own namespace in gateway mode.
    entry = routing.gateway_namespace if routing.mode == "gateway" and routing.gateway_namespace else None
    ingress_source = [namespace(entry or routing.ingress_namespace)]
    result = [
        Flow(
            "immune-core",
            APP,
            ingress=[(ingress_source, [HTTP_PORT]), (scrapers, [HTTP_PORT])],
            egress=[
                ([pods(POSTGRES)], [postgres_module.PORT]),
                ([pods(REDIS)], [redis_module.PORT]),
                ([pods(KAFKA)], [kafka_module.CLIENT_PORT]),
            ],
        ),
        Flow("immune-core-migrate", MIGRATE, egress=[([pods(POSTGRES)], [postgres_module.PORT])]),
        Flow(
            "postgres",
            POSTGRES,
            ingress=[
                ([pods(APP), pods(MIGRATE)], [postgres_module.PORT]),
                (scrapers, [postgres_module.EXPORTER_PORT]),
            ],
        ),
        Flow(
            "redis",
            REDIS,
            ingress=[([pods(APP)], [redis_module.PORT]), (scrapers, [redis_module.EXPORTER_PORT])],
        ),
        Flow(
            "kafka",
            KAFKA,
            ingress=[
                ([pods(APP), pods(KAFKA_TOPICS), pods(KAFKA_EXPORTER)], [kafka_module.CLIENT_PORT]),
                ([pods(KAFKA)], [kafka_module.CLIENT_PORT, kafka_module.CONTROLLER_PORT]),
            ],
            egress=[([pods(KAFKA)], [kafka_module.CLIENT_PORT, kafka_module.CONTROLLER_PORT])],
        ),
        Flow("kafka-topics", KAFKA_TOPICS, egress=[([pods(KAFKA)], [kafka_module.CLIENT_PORT])]),
        Flow(
            "kafka-exporter",
            KAFKA_EXPORTER,
            ingress=[(scrapers, [kafka_module.EXPORTER_PORT])],
            egress=[([pods(KAFKA)], [kafka_module.CLIENT_PORT])],
        ),
    ]
    if not operator_mode:
        # The cluster's router (outside the cluster's pods: e.g. the local cluster's host process).
        router = settings.monitoring.router_scrape_target
        router_rule = []
        if router is not None:
            host, port = split_host_port(router)
            router_rule = [([address(host)], [port])]
        # The discovery sidecar (no DNS) lists EndpointSlices: the API server behind the `kubernetes`
        # Service, matched at its endpoint (policies see the address after the Service's translation).
        discovery = settings.monitoring.endpoints_discovery
        api_rule = []
        if discovery is not None and not settings.cluster.dns:
            host, port = split_host_port(discovery.api_server)
            api_rule = [([address(host)], [port])]
        result += [
            Flow(
                "prometheus",
                PROMETHEUS,
                ingress=[([pods(GRAFANA)], [PROMETHEUS_PORT])],
                egress=[
                    ([pods(APP)], [HTTP_PORT]),
                    ([pods(KAFKA_EXPORTER)], [kafka_module.EXPORTER_PORT]),
                    ([pods(REDIS)], [redis_module.EXPORTER_PORT]),
                    ([pods(POSTGRES)], [postgres_module.EXPORTER_PORT]),
                    *router_rule,
                    *api_rule,
                ],
            ),
        ]
        if settings.monitoring.grafana:
            result.append(Flow("grafana", GRAFANA, egress=[([pods(PROMETHEUS)], [PROMETHEUS_PORT])]))
    return result


def _rules(direction: str, rules: list[tuple[list[Selector], list[int]]]) -> list[dict[str, Any]]:
    peer_key = "from" if direction == "ingress" else "to"
    return [
        {peer_key: peers, "ports": [{"protocol": "TCP", "port": port} for port in ports]}
        for peers, ports in rules
    ]


class NetworkPolicies(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace_name: pulumi.Input[str],
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("immune:network_policy:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)

        def policy(suffix: str, policy_name: str, spec: dict[str, Any]) -> k8s.networking.v1.NetworkPolicy:
            return k8s.networking.v1.NetworkPolicy(
                f"{name}-{suffix}",
                metadata={"name": policy_name, "namespace": namespace_name},
                spec=spec,
                opts=child,
            )

        policy("default-deny", "default-deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        policy("dns", "allow-dns-egress", _dns_egress())
        for flow in flows(settings):
            policy(flow.name, f"allow-{flow.name}", _flow_spec(flow))
        self.register_outputs({})


def _dns_egress() -> dict[str, Any]:
    """Every pod may ask the cluster DNS (kube-dns in kube-system), UDP and TCP port 53."""
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [{**namespace("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        ],
    }


def _flow_spec(flow: Flow) -> dict[str, Any]:
    """The policy of one flow: its pods, and the ingress and egress rules it has (a side without rules
    is left out of policyTypes, so the default deny still holds there)."""
    policy_types = [kind for kind, rules in (("Ingress", flow.ingress), ("Egress", flow.egress)) if rules]
    spec: dict[str, Any] = {"podSelector": {"matchLabels": flow.pods}, "policyTypes": policy_types}
    if flow.ingress:
        spec["ingress"] = _rules("ingress", flow.ingress)
    if flow.egress:
        spec["egress"] = _rules("egress", flow.egress)
    return spec
