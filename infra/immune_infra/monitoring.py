"""Monitoring: Prometheus (scrape config + SLO alert rules) and Grafana (provisioned datasource and the
service's dashboard), or, with `monitoring.mode: operator`, ServiceMonitor / PrometheusRule objects and
a dashboard ConfigMap for clusters that already run the Prometheus Operator and Grafana's sidecar.

Prometheus finds the service's pods through DNS (one headless Service per colour) rather than the
Kubernetes API, so it needs no ServiceAccount token and no RBAC. On a cluster without DNS
(`cluster.dns: false`) a sidecar reads the colours' EndpointSlices from the API instead
(immune_infra.endpoints_sd, file_sd): a Role to list EndpointSlices in the namespace, and a projected
token mounted in that sidecar only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from immune_infra import endpoints_sd
from immune_infra import kafka as kafka_module
from immune_infra import postgres as postgres_module
from immune_infra import redis as redis_module
from immune_infra.config import COLORS, EndpointsDiscovery, MonitoringSettings, StackSettings
from immune_infra.footprint import ENDPOINTS_DISCOVERY
from immune_infra.immune_app import APP_NAME, COLOR_LABEL, HTTP_PORT, pods_service_name
from immune_infra.slo_rules import alert_rules
from immune_infra.workload import (
    MOUNT_API_TOKEN,
    TMP_PATH,
    container_security_context,
    content_hash,
    data_claims,
    empty_dir,
    labels,
    mount,
    plain_env,
    pod_security_context,
    resources,
    secret_env,
    service_dns,
    with_data,
)

PROMETHEUS_PORT = 9090
ROUTER_JOB = "router"
# Traefik's provider suffixes on its `service` label (tests/cluster/test_router.py reads them live).
GATEWAY_PROVIDER = "kubernetesgateway"
INGRESS_NGINX_PROVIDER = "kubernetesingressnginx"
PROMETHEUS_SERVICE = "prometheus"  # the bundled Prometheus's Service (and StatefulSet)
GRAFANA_PORT = 3000
DASHBOARD_FILE = "immune-core.json"
# Grafana's file provider: loads the dashboards mounted from the ConfigMap into one folder.
GRAFANA_DASHBOARD_PROVIDERS: dict[str, Any] = {
    "apiVersion": 1,
    "providers": [
        {
            "name": "immune-core",
            "folder": "Active Immune Core",
            "type": "file",
            "disableDeletion": True,
            "options": {"path": "/var/lib/grafana-dashboards"},
        }
    ],
}


def dashboard_json() -> str:
    return (package_files.files("immune_infra") / "dashboards" / DASHBOARD_FILE).read_text()


# `cluster.dns: false`: the single-pod exporters' hosts (Service ClusterIPs) by key. The program writes
# the ClusterIPs it knows into the config instead of DNS names that would never resolve; the service's
# own pods (several per colour) come from the discovery sidecar instead (DISCOVERY_DIR).
SCRAPE_HOST_KEYS = ("kafka-exporter", "redis", "postgres")
# The discovery sidecar writes DISCOVERY_FILE there; Prometheus reads it through file_sd_configs.
DISCOVERY_DIR = "/etc/prometheus-discovery"
DISCOVERY_FILE = "app.json"
DISCOVERY_SCRIPT = Path(endpoints_sd.__file__).name
DISCOVERY_INTERVAL_S = 5
DISCOVERY_NAME = "prometheus-discovery"  # its ServiceAccount, Role, RoleBinding and ConfigMap
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105 (a path, not a secret)


def router_service_regex(namespace: str) -> str:
    """Which values of Traefik's `service` label are this namespace's Services (a regex, anchored at
    both ends as Prometheus anchors it; Python: `re.fullmatch`).

    Seen live on Traefik v3.7.13 (tests/cluster/test_router.py): Gateway API leaves are
    `httproute-<route ns>-<route>-gw-<gateway ns>-<gateway>-ep-<entry point>-<i>-<hash>-svc-<ns>-<service>-<i>
    @kubernetesgateway` (the backend Service's namespace follows `-svc-`); the ingress-nginx provider's are
    `<ns>-<ingress>-<service>-<port name>@kubernetesingressnginx`, and `...-canary@...` for a canary Ingress's
    backend (named after the primary's). The router serves every namespace; the rest is not ours.
    """
    return f".+-svc-{namespace}-.+@{GATEWAY_PROVIDER}|{namespace}-.+@{INGRESS_NGINX_PROVIDER}"


def router_job(target: str, namespace: str) -> dict[str, Any]:
    """The scrape job of the cluster's router at `target` (host:port): its traefik_service_* series of this
    namespace's Services, labelled with the namespace. Everything else the router exports is dropped at
    ingestion (metric_relabel_configs); the job's own `up` and scrape_* series are synthetic, never
    relabelled, so a router that does not answer still shows as `up == 0`."""
    return {
        "job_name": ROUTER_JOB,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [target]}],
        "relabel_configs": [{"target_label": "namespace", "replacement": namespace}],
        "metric_relabel_configs": [
            {
                "source_labels": ["__name__", "service"],
                "separator": ";",
                "regex": f"traefik_service_[a-z_]+;({router_service_regex(namespace)})",
                "action": "keep",
            }
        ],
    }


def prometheus_config(settings: StackSettings, hosts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The bundled Prometheus's configuration. `hosts` (one per SCRAPE_HOST_KEYS) replaces the DNS names
    of the exporters' Services; the service's pods then come from the discovery sidecar's file
    (file_sd, `__meta_kubernetes_*` labels as kubernetes_sd gives them): one target per pod, labelled
    with its colour and pod name."""
    namespace = settings.namespace
    monitoring = settings.monitoring
    namespace_label = {"target_label": "namespace", "replacement": namespace}
    app_job: dict[str, Any] = {"job_name": APP_NAME, "metrics_path": "/metrics"}
    if hosts is None:
        app_job["dns_sd_configs"] = [
            {"names": [service_dns(pods_service_name(color), namespace)], "type": "A", "port": HTTP_PORT}
            for color in COLORS
        ]
        app_job["relabel_configs"] = [
            # The DNS name tells which colour a pod belongs to: keep it as a label for canary analysis.
            {
                "source_labels": ["__meta_dns_name"],
                "regex": f"{APP_NAME}-(blue|green)-pods\\..*",
                "target_label": "color",
                "replacement": "$1",
            },
            namespace_label,
        ]
    else:
        app_job["file_sd_configs"] = [
            # fsnotify picks up each rewrite at once; the refresh is the fallback.
            {"files": [f"{DISCOVERY_DIR}/{DISCOVERY_FILE}"], "refresh_interval": "30s"}
        ]
        app_job["relabel_configs"] = [
            {
                "source_labels": ["__meta_kubernetes_service_name"],
                "regex": f"{APP_NAME}-(blue|green)-pods",
                "target_label": "color",
                "replacement": "$1",
            },
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            namespace_label,
        ]

    def static_job(job: str, service: str, port: int) -> dict[str, Any]:
        host = service_dns(service, namespace) if hosts is None else hosts[service]
        return {
            "job_name": job,
            "static_configs": [{"targets": [f"{host}:{port}"]}],
            "relabel_configs": [namespace_label],
        }

    router = monitoring.router_scrape_target
    return {
        "global": {
            "scrape_interval": monitoring.scrape_interval,
            "evaluation_interval": monitoring.scrape_interval,
            "external_labels": {"environment": settings.environment},
        },
        "rule_files": ["/etc/prometheus/rules/*.yaml"],
        "scrape_configs": [
            app_job,
            static_job("kafka", "kafka-exporter", kafka_module.EXPORTER_PORT),
            static_job("redis", redis_module.SERVICE_NAME, redis_module.EXPORTER_PORT),
            static_job("postgres", postgres_module.SERVICE_NAME, postgres_module.EXPORTER_PORT),
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{PROMETHEUS_PORT}"]}],
                "relabel_configs": [namespace_label],
            },
            *([router_job(router, namespace)] if router is not None else []),
        ],
    }


class Monitoring(pulumi.ComponentResource):
    prometheus_url: str

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        grafana_admin_password: pulumi.Output[str],
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
        crds: Sequence[pulumi.Resource] = (),
        scrape_hosts: Mapping[str, pulumi.Input[str]] | None = None,
    ) -> None:
        super().__init__("immune:monitoring:Monitoring", name, None, opts)
        # Required without cluster DNS (SCRAPE_HOST_KEYS -> ClusterIP), ignored with it.
        self._scrape_hosts = None if settings.cluster.dns else scrape_hosts
        if not settings.cluster.dns and settings.monitoring.mode == "bundled":
            missing = sorted(set(SCRAPE_HOST_KEYS) - set(scrape_hosts or {}))
            if missing:
                raise ValueError(f"cluster.dns false: Prometheus needs the ClusterIPs of {missing}")
        self._name = name
        # The definitions of ServiceMonitor/PrometheusRule when the program applies them (immune_infra.crds).
        self._crds = list(crds)
        self._settings = settings
        self._namespace = namespace
        self._provider = provider
        if settings.monitoring.mode == "operator":
            self.prometheus_url = settings.monitoring.operator_prometheus_url
            self._operator_objects()
        else:
            self.prometheus_url = (
                f"http://{service_dns(PROMETHEUS_SERVICE, settings.namespace)}:{PROMETHEUS_PORT}"
            )
            self._prometheus()
            if settings.monitoring.grafana:
                self._grafana(grafana_admin_password)
        self.register_outputs({"prometheus_url": self.prometheus_url})

    def _child(self, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._provider, depends_on=depends_on or [])

    def _prometheus(self) -> None:
        settings = self._settings
        monitoring = settings.monitoring
        prom_labels = labels("prometheus", "monitoring")
        rules_text = yaml.safe_dump(alert_rules(settings), sort_keys=False)
        config_text: pulumi.Output[str] = pulumi.Output.all(**(self._scrape_hosts or {})).apply(
            lambda hosts: yaml.safe_dump(
                prometheus_config(settings, hosts if self._scrape_hosts is not None else None),
                sort_keys=False,
            )
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{self._name}-prometheus-config",
            metadata={"name": "prometheus-config", "namespace": self._namespace, "labels": prom_labels},
            data={"prometheus.yml": config_text},
            opts=self._child(),
        )
        rules_map = k8s.core.v1.ConfigMap(
            f"{self._name}-prometheus-rules",
            metadata={"name": "prometheus-rules", "namespace": self._namespace, "labels": prom_labels},
            data={"immune-core-slo.yaml": rules_text},
            opts=self._child(),
        )
        discovery = monitoring.endpoints_discovery if self._scrape_hosts is not None else None
        discovery_objects = self._discovery_objects() if discovery is not None else []
        k8s.core.v1.Service(
            f"{self._name}-prometheus-service",
            metadata={"name": PROMETHEUS_SERVICE, "namespace": self._namespace, "labels": prom_labels},
            spec={
                "selector": prom_labels,
                "ports": [{"name": "web", "port": PROMETHEUS_PORT, "target_port": "web"}],
            },
            opts=self._child(),
        )
        self.prometheus = k8s.apps.v1.StatefulSet(
            f"{self._name}-prometheus",
            metadata={"name": PROMETHEUS_SERVICE, "namespace": self._namespace, "labels": prom_labels},
            spec={
                "service_name": PROMETHEUS_SERVICE,
                "replicas": 1,
                "selector": {"match_labels": prom_labels},
                "template": {
                    "metadata": {
                        "labels": prom_labels,
                        # Prometheus reads its files at start: roll it when they change.
                        "annotations": {
                            "immune.vertice.dev/config-hash": config_text.apply(
                                lambda text: content_hash(text, rules_text, discovery_script())
                            )
                        },
                    },
                    "spec": with_data(
                        _prometheus_pod_spec(monitoring, settings.namespace, discovery),
                        settings.cluster.persistent_volumes,
                        monitoring.storage,
                    ),
                },
                "volume_claim_templates": data_claims(
                    settings.cluster.persistent_volumes, monitoring.storage, None
                ),
            },
            opts=self._child(depends_on=[config_map, rules_map, *discovery_objects]),
        )

    def _discovery_objects(self) -> list[pulumi.Resource]:
        """The discovery sidecar's program (a ConfigMap) and its right to list the namespace's
        EndpointSlices, nothing else (a ServiceAccount without an automounted token, a Role, a
        RoleBinding)."""
        discovery_labels = labels(DISCOVERY_NAME, "monitoring")
        metadata = {"name": DISCOVERY_NAME, "namespace": self._namespace, "labels": discovery_labels}
        script = k8s.core.v1.ConfigMap(
            f"{self._name}-discovery-script",
            metadata=metadata,
            data={DISCOVERY_SCRIPT: discovery_script()},
            opts=self._child(),
        )
        account = k8s.core.v1.ServiceAccount(
            f"{self._name}-discovery-account",
            metadata=metadata,
            automount_service_account_token=MOUNT_API_TOKEN,
            opts=self._child(),
        )
        role = k8s.rbac.v1.Role(
            f"{self._name}-discovery-role",
            metadata=metadata,
            rules=[{"api_groups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}],
            opts=self._child(),
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{self._name}-discovery-binding",
            metadata=metadata,
            role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": DISCOVERY_NAME},
            subjects=[{"kind": "ServiceAccount", "name": DISCOVERY_NAME, "namespace": self._namespace}],
            opts=self._child(depends_on=[role, account]),
        )
        return [script, account, role, binding]

    def _grafana(self, admin_password: pulumi.Output[str]) -> None:
        monitoring = self._settings.monitoring
        grafana_labels = labels("grafana", "monitoring")
        secret = k8s.core.v1.Secret(
            f"{self._name}-grafana-admin",
            metadata={"name": "grafana-admin", "namespace": self._namespace, "labels": grafana_labels},
            type="Opaque",
            string_data={"password": admin_password},
            opts=self._child(),
        )
        datasources = _grafana_datasources(self.prometheus_url)
        providers = GRAFANA_DASHBOARD_PROVIDERS
        provisioning = k8s.core.v1.ConfigMap(
            f"{self._name}-grafana-provisioning",
            metadata={"name": "grafana-provisioning", "namespace": self._namespace, "labels": grafana_labels},
            data={
                "datasources.yaml": yaml.safe_dump(datasources, sort_keys=False),
                "dashboards.yaml": yaml.safe_dump(providers, sort_keys=False),
            },
            opts=self._child(),
        )
        dashboards = k8s.core.v1.ConfigMap(
            f"{self._name}-grafana-dashboards",
            metadata={"name": "grafana-dashboards", "namespace": self._namespace, "labels": grafana_labels},
            data={DASHBOARD_FILE: dashboard_json()},
            opts=self._child(),
        )
        k8s.core.v1.Service(
            f"{self._name}-grafana-service",
            metadata={"name": "grafana", "namespace": self._namespace, "labels": grafana_labels},
            spec={
                "selector": grafana_labels,
                "ports": [{"name": "web", "port": GRAFANA_PORT, "target_port": "web"}],
            },
            opts=self._child(),
        )
        provisioned = content_hash(datasources, providers, dashboard_json())
        self.grafana = k8s.apps.v1.Deployment(
            f"{self._name}-grafana",
            metadata={"name": "grafana", "namespace": self._namespace, "labels": grafana_labels},
            spec={
                "replicas": 1,
                "selector": {"match_labels": grafana_labels},
                "template": {
                    "metadata": {
                        "labels": grafana_labels,
                        "annotations": {"immune.vertice.dev/config-hash": provisioned},
                    },
                    "spec": _grafana_pod_spec(monitoring),
                },
            },
            opts=self._child(depends_on=[secret, provisioning, dashboards]),
        )

    def _custom_resource(self, suffix: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        release = {"release": self._settings.monitoring.operator_release_label}
        k8s.apiextensions.CustomResource(
            f"{self._name}-{suffix}",
            api_version="monitoring.coreos.com/v1",
            kind=kind,
            metadata={
                "name": name,
                "namespace": self._namespace,
                "labels": {**labels(name, "monitoring"), **release},
            },
            spec=spec,
            opts=self._child(depends_on=self._crds),
        )

    def _operator_objects(self) -> None:
        settings = self._settings
        interval = settings.monitoring.scrape_interval
        self._custom_resource(
            "app-servicemonitor",
            "ServiceMonitor",
            APP_NAME,
            {
                "selector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": APP_NAME,
                        "app.kubernetes.io/component": "api-pods",
                    }
                },
                "endpoints": [
                    {
                        "port": "http",
                        "path": "/metrics",
                        "interval": interval,
                        "relabelings": [
                            {
                                "sourceLabels": [
                                    f"__meta_kubernetes_service_label_{_label_key(COLOR_LABEL)}"
                                ],
                                "targetLabel": "color",
                            }
                        ],
                    }
                ],
            },
        )
        for component, service_name in (
            ("kafka-exporter", "kafka-exporter"),
            ("redis", redis_module.SERVICE_NAME),
            ("postgres", postgres_module.SERVICE_NAME),
        ):
            self._custom_resource(
                f"{component}-servicemonitor",
                "ServiceMonitor",
                service_name,
                {
                    "selector": {"matchLabels": {"app.kubernetes.io/name": service_name}},
                    "endpoints": [{"port": "metrics", "interval": interval}],
                },
            )
        self._custom_resource("slo-rules", "PrometheusRule", f"{APP_NAME}-slo", alert_rules(settings))
        k8s.core.v1.ConfigMap(
            f"{self._name}-dashboard",
            metadata={
                "name": f"{APP_NAME}-dashboard",
                "namespace": self._namespace,
                # The Grafana sidecar of kube-prometheus-stack imports ConfigMaps with this label.
                "labels": {**labels("grafana", "dashboard"), "grafana_dashboard": "1"},
            },
            data={DASHBOARD_FILE: json.dumps(json.loads(dashboard_json()))},
            opts=self._child(),
        )


def discovery_script() -> str:
    """The discovery sidecar's program (immune_infra/endpoints_sd.py, standard library only)."""
    return Path(endpoints_sd.__file__).read_text(encoding="utf-8")


def _discovery_container(discovery: EndpointsDiscovery, namespace: str) -> k8s.core.v1.ContainerArgsDict:
    services = [arg for color in COLORS for arg in ("--service", pods_service_name(color))]
    command = ["python3", f"/opt/discovery/{DISCOVERY_SCRIPT}"]
    args = [
        f"--namespace={namespace}",
        *services,
        "--port=http",
        f"--output={DISCOVERY_DIR}/{DISCOVERY_FILE}",
        f"--interval={DISCOVERY_INTERVAL_S}",
    ]

    def probe(kind: str, period_s: int) -> k8s.core.v1.ProbeArgsDict:
        # A Python start on a loaded node under the container's CPU limit took over 1 s (the default
        # timeout): the probe failed, and the liveness probe restarted a healthy sidecar.
        return {
            "exec": {"command": [*command, *args, f"--probe={kind}"]},
            "period_seconds": period_s,
            "timeout_seconds": 10,
        }

    return {
        "name": "discovery",
        "image": discovery.image,
        "image_pull_policy": "IfNotPresent",
        "command": command,
        "args": args,
        "readiness_probe": probe("ready", 10),
        "liveness_probe": {**probe("alive", 30), "initial_delay_seconds": 30},
        "resources": resources(ENDPOINTS_DISCOVERY),
        "security_context": container_security_context(),
        "volume_mounts": [
            mount("discovery-script", "/opt/discovery", read_only=True),
            mount("discovered", DISCOVERY_DIR),
            mount("api-token", TOKEN_DIR, read_only=True),
        ],
    }


def _discovery_volumes() -> list[k8s.core.v1.VolumeArgsDict]:
    # The token is projected into the sidecar alone (the pod automounts none): short-lived, bound to
    # the pod, rotated by the kubelet (the sidecar re-reads it on every poll).
    token_sources: list[k8s.core.v1.VolumeProjectionArgsDict] = [
        {"service_account_token": {"path": "token", "expiration_seconds": 3600}},
        {"config_map": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    ]
    return [
        {"name": "discovery-script", "config_map": {"name": DISCOVERY_NAME}},
        empty_dir("discovered", "8Mi"),
        {"name": "api-token", "projected": {"sources": token_sources}},
    ]


def _prometheus_pod_spec(
    monitoring: MonitoringSettings, namespace: str, discovery: EndpointsDiscovery | None = None
) -> k8s.core.v1.PodSpecArgsDict:
    sidecars = [_discovery_container(discovery, namespace)] if discovery is not None else []
    return {
        **({"service_account_name": DISCOVERY_NAME} if discovery is not None else {}),
        "automount_service_account_token": MOUNT_API_TOKEN,
        "security_context": pod_security_context(),
        "containers": [
            {
                "name": "prometheus",
                "image": monitoring.prometheus_image,
                "image_pull_policy": "IfNotPresent",
                "args": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={monitoring.retention}",
                    f"--web.listen-address=:{PROMETHEUS_PORT}",
                ],
                "ports": [{"name": "web", "container_port": PROMETHEUS_PORT}],
                "readiness_probe": {
                    "http_get": {"path": "/-/ready", "port": "web"},
                    "period_seconds": 10,
                },
                "liveness_probe": {
                    "http_get": {"path": "/-/healthy", "port": "web"},
                    "initial_delay_seconds": 30,
                    "period_seconds": 20,
                },
                "resources": resources(monitoring.prometheus_resources),
                "security_context": container_security_context(),
                "volume_mounts": [
                    mount("data", "/prometheus"),
                    mount("config", "/etc/prometheus", read_only=True),
                    mount("rules", "/etc/prometheus/rules", read_only=True),
                    *([mount("discovered", DISCOVERY_DIR, read_only=True)] if discovery else []),
                ],
            },
            *sidecars,
        ],
        "volumes": [
            {"name": "config", "config_map": {"name": "prometheus-config"}},
            {"name": "rules", "config_map": {"name": "prometheus-rules"}},
            *(_discovery_volumes() if discovery is not None else []),
        ],
    }


def _grafana_datasources(prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
            }
        ],
    }


def _grafana_pod_spec(monitoring: MonitoringSettings) -> k8s.core.v1.PodSpecArgsDict:
    return {
        "automount_service_account_token": MOUNT_API_TOKEN,
        "security_context": pod_security_context(),
        "containers": [_grafana_container(monitoring)],
        "volumes": [
            empty_dir("data", "512Mi"),
            empty_dir("logs", "64Mi"),
            empty_dir("tmp", "64Mi"),
            {"name": "provisioning", "config_map": {"name": "grafana-provisioning"}},
            {"name": "dashboards", "config_map": {"name": "grafana-dashboards"}},
        ],
    }


def _grafana_container(monitoring: MonitoringSettings) -> k8s.core.v1.ContainerArgsDict:
    return {
        "name": "grafana",
        "image": monitoring.grafana_image,
        "image_pull_policy": "IfNotPresent",
        "env": [
            plain_env("GF_SECURITY_ADMIN_USER", "admin"),
            secret_env("GF_SECURITY_ADMIN_PASSWORD", "grafana-admin", "password"),
            plain_env("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"),
            plain_env("GF_PATHS_DATA", "/var/lib/grafana"),
            plain_env("GF_PATHS_LOGS", "/var/log/grafana"),
            plain_env("GF_USERS_ALLOW_SIGN_UP", "false"),
            plain_env("GF_ANALYTICS_REPORTING_ENABLED", "false"),
            plain_env("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
        ],
        "ports": [{"name": "web", "container_port": GRAFANA_PORT}],
        "readiness_probe": {"http_get": {"path": "/api/health", "port": "web"}},
        "liveness_probe": {
            "http_get": {"path": "/api/health", "port": "web"},
            "initial_delay_seconds": 30,
            "period_seconds": 20,
        },
        "resources": resources(monitoring.grafana_resources),
        "security_context": container_security_context(),
        "volume_mounts": [
            mount("data", "/var/lib/grafana"),
            mount("logs", "/var/log/grafana"),
            mount("tmp", TMP_PATH),
            mount(
                "provisioning",
                "/etc/grafana/provisioning/datasources/datasources.yaml",
                read_only=True,
                sub_path="datasources.yaml",
            ),
            mount(
                "provisioning",
                "/etc/grafana/provisioning/dashboards/dashboards.yaml",
                read_only=True,
                sub_path="dashboards.yaml",
            ),
            mount("dashboards", "/var/lib/grafana-dashboards", read_only=True),
        ],
    }


def _label_key(label: str) -> str:
    """How Prometheus's service discovery spells a Kubernetes label in its meta labels."""
    return "".join(char if char.isalnum() else "_" for char in label)
