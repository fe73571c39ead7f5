"""The whole stack, wired from one validated settings object. `infra/__main__.py` calls `deploy()`."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import SETTINGS_KEY, StackSettings, parse_settings
from immune_infra.crds import CustomResourceDefinitions, groups_needed
from immune_infra.credentials import StackCredentials, registry_password
from immune_infra.image import ServiceImage
from immune_infra.immune_app import CANARY_HEADER, AppDependencies, ImmuneApp
from immune_infra.kafka import Kafka
from immune_infra.monitoring import ROUTER_JOB, Monitoring
from immune_infra.namespace import ImmuneNamespace
from immune_infra.network_policy import NetworkPolicies
from immune_infra.postgres import Postgres
from immune_infra.redis import Redis


def load_settings(config: pulumi.Config) -> StackSettings:
    return parse_settings(config.require_object(SETTINGS_KEY))


def kubernetes_provider(settings: StackSettings) -> k8s.Provider:
    """The stack's one explicit provider; with `renderYamlToDirectory` it writes manifests, no cluster."""
    if settings.render_yaml_to_directory:
        return k8s.Provider("k8s", render_yaml_to_directory=settings.render_yaml_to_directory)
    return k8s.Provider("k8s", namespace=settings.namespace)


def deploy() -> dict[str, Any]:
    config = pulumi.Config()
    settings = load_settings(config)
    credentials = StackCredentials.from_config(config)
    provider = kubernetes_provider(settings)

    build = settings.image_build
    needs_registry_password = build.enabled and build.registry_username is not None
    image = ServiceImage(
        "immune-image", settings, registry_password(config) if needs_registry_password else None
    )
    namespace = ImmuneNamespace("immune-namespace", settings, provider)
    # The published CRDs of the custom kinds this stack declares, if any (none by default).
    crds: list[pulumi.Resource] = []
    if settings.crds.install and groups_needed(settings):
        crds = list(CustomResourceDefinitions("crds", settings, provider).definitions)
    kafka = Kafka("kafka", settings, namespace.name, provider)
    redis = Redis("redis", settings, namespace.name, credentials, provider)
    postgres = Postgres("postgres", settings, namespace.name, credentials, provider)
    NetworkPolicies("network", settings, namespace.name, provider)
    app = ImmuneApp(
        "immune-core",
        settings,
        namespace.name,
        image.by_color,
        credentials.api_tokens,
        AppDependencies(
            database_secret=postgres.secret_name,
            database_url_key=postgres.url_key,
            redis_secret=redis.secret_name,
            redis_url_key=redis.url_key,
            kafka_bootstrap_servers=kafka.bootstrap_servers,
            postgres_image=settings.postgres.image,
            postgres_host=postgres.host,
            postgres_user=settings.postgres.user,
            waits_for=[postgres.statefulset, postgres.service, redis.statefulset, kafka.topics_job],
        ),
        provider,
        crds=crds,
    )
    monitoring = Monitoring(
        "monitoring",
        settings,
        namespace.name,
        credentials.grafana_admin_password,
        provider,
        crds=crds,
        # Without cluster DNS Prometheus scrapes these Services at their ClusterIPs (the service's own
        # pods: through the discovery sidecar).
        scrape_hosts={
            "kafka-exporter": kafka.exporter_service.spec.cluster_ip,
            "redis": redis.host,
            "postgres": postgres.host,
        },
    )
    rollout = settings.rollout
    return {
        "environment": settings.environment,
        "namespace": settings.namespace,
        "stableUrl": app.stable_url,
        "previewUrl": app.preview_url,
        "canaryUrl": app.canary_url,
        "canaryHeader": f"{CANARY_HEADER}: always",
        "activeColor": rollout.active_color,
        "previewColor": rollout.preview_color,
        "canaryWeight": rollout.canary_weight,
        # Kayenta's fresh baseline: its pod count (0 = none) and its routed share (HTTPRoute only).
        "baselineReplicas": rollout.baseline_replicas,
        "baselineUrl": app.baseline_url,
        # The baseline's host through the router (gateway mode with routing.baselineHost), else none.
        "baselineHost": settings.routing.baseline_host if settings.routing.mode == "gateway" else None,
        "baselineWeight": rollout.baseline_weight if settings.routing.mode == "gateway" else 0,
        "routingMode": settings.routing.mode,
        "images": {"blue": image.by_color["blue"], "green": image.by_color["green"]},
        # The resource that built the image (imageBuild.builder resolved), or none: digests from config.
        "imageBuilder": image.builder or "none",
        "prometheusUrl": monitoring.prometheus_url,
        "monitoringMode": settings.monitoring.mode,
        # "router" when the bundled Prometheus scrapes the cluster's router (its traefik_service_* series
        # of this namespace carry job="router"), else none: the pipeline then has no router series.
        "routerScrapeJob": ROUTER_JOB if settings.monitoring.router_scrape_target is not None else None,
        # The rollout this update applied, kept with the stack's state in the backend: the pipeline reads
        # its state from here, never from a checked-out Pulumi.<stack>.yaml (immune_suite/targets/kubernetes).
        "rollout": rollout.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
