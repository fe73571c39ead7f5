"""The real program under mocks, for both real stack files: every part exists with its properties."""

from __future__ import annotations

import json
from typing import Any

import yaml
from immune_core.runtime import READINESS_DATABASE_TIMEOUT_S
from immune_infra.kafka import cluster_id
from immune_infra.policies import containers, pod_spec
from immune_infra.render import RenderedStack, render_only_secrets, render_stack

from tests.infra.support import assert_fits_the_quota, render

APP_DEPLOYMENTS = ("immune-core-blue", "immune-core-green")


def env_of(manifest: dict[str, Any], container_name: str) -> dict[str, dict[str, Any]]:
    spec = pod_spec(manifest) or {}
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        if container["name"] == container_name:
            return {item["name"]: item for item in container.get("env") or []}
    raise KeyError(container_name)


def test_namespace_is_restricted_with_quota_and_limits(stack: RenderedStack) -> None:
    namespace = stack.exports["namespace"]
    ns = stack.find("Namespace", namespace)
    for mode in ("enforce", "audit", "warn"):
        assert ns["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
    quota = stack.find("ResourceQuota", "immune-quota")["spec"]["hard"]
    assert {"requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "pods"} <= quota.keys()
    assert quota["services.loadbalancers"] == "0"
    limits = stack.find("LimitRange", "immune-limits")["spec"]["limits"]
    assert any(item["type"] == "Container" and item["default"] and item["defaultRequest"] for item in limits)
    for manifest in stack.manifests:
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == namespace, manifest["metadata"]["name"]


def test_kafka_is_kraft_with_durability_per_stack(staging: RenderedStack, prod: RenderedStack) -> None:
    expected = {"staging": (1, "1", "1"), "prod": (3, "3", "2")}
    for rendered in (staging, prod):
        brokers, replication, min_insync = expected[rendered.stack]
        kafka = rendered.find("StatefulSet", "kafka")
        assert kafka["spec"]["replicas"] == brokers
        assert kafka["spec"]["podManagementPolicy"] == "Parallel"
        assert kafka["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        container = kafka["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].startswith("apache/kafka:")
        env = env_of(kafka, "kafka")
        assert env["KAFKA_BROKERS"]["value"] == str(brokers)
        assert env["KAFKA_REPLICATION_FACTOR"]["value"] == replication
        assert env["KAFKA_MIN_INSYNC_REPLICAS"]["value"] == min_insync
        assert env["KAFKA_CLUSTER_ID"]["value"] == cluster_id(rendered.exports["namespace"])
        assert len(env["KAFKA_CLUSTER_ID"]["value"]) == 22
        script = rendered.find("ConfigMap", "kafka-scripts")["data"]["start-kafka.sh"]
        assert "process.roles=broker,controller" in script
        assert "controller.quorum.voters=${voters}" in script
        assert kafka["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert rendered.find("Service", "kafka-headless")["spec"]["clusterIP"] == "None"

    prod_affinity = prod.find("StatefulSet", "kafka")["spec"]["template"]["spec"]["affinity"][
        "podAntiAffinity"
    ]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in prod_affinity
    staging_affinity = staging.find("StatefulSet", "kafka")["spec"]["template"]["spec"]["affinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in staging_affinity["podAntiAffinity"]
    assert prod.find("PodDisruptionBudget", "kafka")["spec"] == {
        "selector": {"matchLabels": prod.find("StatefulSet", "kafka")["spec"]["selector"]["matchLabels"]},
        "minAvailable": 2,
    }
    assert staging.find("PodDisruptionBudget", "kafka")["spec"]["maxUnavailable"] == 1


def test_topics_job_creates_every_service_topic(stack: RenderedStack) -> None:
    jobs = [job for job in stack.of_kind("Job") if job["metadata"]["name"].startswith("kafka-topics-")]
    assert len(jobs) == 1
    env = env_of(jobs[0], "create-topics")
    topics = env["TOPICS"]["value"].split()
    for topic in (
        "vertice.network.events",
        "vertice.endpoint.events",
        "vertice.threats.intel",
        "immunis.dlq",
    ):
        assert topic in topics
    job_resource = stack.resource("kafka-topics")
    statefulset_urn = stack.resource("kafka-statefulset").urn
    assert statefulset_urn in job_resource.dependencies


def test_redis_persists_and_takes_its_password_from_a_secret(stack: RenderedStack) -> None:
    redis = stack.find("StatefulSet", "redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("redis:")
    assert container["command"] == ["redis-server", "/etc/redis/redis.conf"]
    secret = stack.find("Secret", "redis-auth")
    password = render_only_secrets(stack.stack)["redisPassword"]
    assert f"requirepass {password}" in secret["stringData"]["redis.conf"]
    assert "appendonly yes" in secret["stringData"]["redis.conf"]
    assert secret["stringData"]["url"].endswith(
        f"@redis.{stack.exports['namespace']}.svc.cluster.local:6379/0"
    )
    # The password is never in the pod spec, only referenced.
    assert password not in json.dumps(redis)


def test_postgres_statefulset_with_volume_and_secret_credentials(stack: RenderedStack) -> None:
    postgres = stack.find("StatefulSet", "postgres")
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    env = env_of(postgres, "postgres")
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "postgres-auth",
        "key": "password",
    }
    assert "value" not in env["POSTGRES_PASSWORD"]
    secret = stack.find("Secret", "postgres-auth")["stringData"]
    assert secret["url"].startswith("postgresql://immune:render-")


def test_migration_runs_before_each_colour_rolls(stack: RenderedStack) -> None:
    postgres_urn = stack.resource("postgres-statefulset").urn
    for color in ("blue", "green"):
        migration = stack.resource(f"immune-core-migrate-{color}")
        job = migration.inputs
        assert job["metadata"]["name"].startswith(f"immune-core-migrate-{color}-")
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["immune-core", "migrate"]
        assert container["image"] == stack.exports["images"][color]
        assert postgres_urn in migration.dependencies
        deployment = stack.resource(f"immune-core-{color}")
        assert migration.urn in deployment.dependencies
        init = job["spec"]["template"]["spec"]["initContainers"][0]
        assert init["name"] == "wait-for-postgres" and init["resources"]["limits"]


def test_app_deployments_follow_the_service_contract(stack: RenderedStack) -> None:
    namespace = stack.exports["namespace"]
    for color in ("blue", "green"):
        deployment = stack.find("Deployment", f"immune-core-{color}")
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["immune.vertice.dev/color"] == color
        assert deployment["spec"]["template"]["metadata"]["labels"] == selector
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "immune-core" and pod["automountServiceAccountToken"] is False
        container = pod["containers"][0]
        assert container["ports"] == [{"name": "http", "containerPort": 8080}]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        # The readiness handler may take its database ping's 2 s bound: a probe that gives up sooner
        # (the kubelet's 1 s default) takes a busy but healthy replica out of the Service.
        assert container["readinessProbe"]["timeoutSeconds"] > READINESS_DATABASE_TIMEOUT_S
        assert container["livenessProbe"]["timeoutSeconds"] > 1
        env = env_of(deployment, "immune-core")
        for name, (secret, key) in {
            "IMMUNE_DATABASE_URL": ("postgres-auth", "url"),
            "IMMUNE_REDIS_URL": ("redis-auth", "url"),
            "IMMUNE_API_TOKENS": ("immune-core-api", "tokens"),
        }.items():
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
        assert env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"]["value"] == f"kafka.{namespace}.svc.cluster.local:9092"
        assert env["IMMUNE_DEPLOYMENT_COLOR"]["value"] == color
        assert env["IMMUNE_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert "IMMUNE_API_PREFIX" in env
    assert stack.find("ServiceAccount", "immune-core")["automountServiceAccountToken"] is False


def test_autoscaler_and_disruption_budget_per_colour(staging: RenderedStack, prod: RenderedStack) -> None:
    for rendered, (minimum, maximum) in ((staging, (1, 3)), (prod, (3, 10))):
        for name in APP_DEPLOYMENTS:
            hpa = rendered.find("HorizontalPodAutoscaler", name)["spec"]
            assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert (hpa["minReplicas"], hpa["maxReplicas"]) == (minimum, maximum)
    assert prod.find("PodDisruptionBudget", "immune-core-blue")["spec"]["minAvailable"] == 2
    assert staging.find("PodDisruptionBudget", "immune-core-blue")["spec"]["maxUnavailable"] == 1


def test_every_container_is_restricted_bounded_and_pinned(stack: RenderedStack) -> None:
    seen = 0
    for manifest in stack.manifests:
        spec = pod_spec(manifest)
        if spec is None:
            continue
        assert spec["automountServiceAccountToken"] is False, manifest["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for where, container in containers(manifest):
            seen += 1
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["runAsUser"] >= 10000, where
            for section in ("requests", "limits"):
                assert set(container["resources"][section]) == {"cpu", "memory"}, where
            assert ":latest" not in container["image"] and ":" in container["image"].rsplit("/", 1)[-1], where
    assert seen >= 12


def test_network_policies_deny_by_default_and_allow_only_known_flows(stack: RenderedStack) -> None:
    policies = {policy["metadata"]["name"]: policy["spec"] for policy in stack.of_kind("NetworkPolicy")}
    assert policies["default-deny-all"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns-egress"]["egress"][0]
    assert {port["port"] for port in dns["ports"]} == {53}
    app = policies["allow-immune-core"]
    assert app["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    egress_ports = {port["port"] for rule in app["egress"] for port in rule["ports"]}
    assert egress_ports == {5432, 6379, 9092}
    ingress_ports = {port["port"] for rule in app["ingress"] for port in rule["ports"]}
    assert ingress_ports == {8080}
    assert policies["allow-postgres"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert "egress" not in policies["allow-postgres"] and policies["allow-postgres"]["policyTypes"] == [
        "Ingress"
    ]
    kafka_peers = policies["allow-kafka"]["ingress"][1]
    assert {port["port"] for port in kafka_peers["ports"]} == {9092, 9093}


def test_monitoring_scrapes_app_and_dependencies_with_slo_rules(stack: RenderedStack) -> None:
    namespace = stack.exports["namespace"]
    config = yaml.safe_load(stack.find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"immune-core", "kafka", "redis", "postgres", "prometheus"}
    names = [name for sd in jobs["immune-core"]["dns_sd_configs"] for name in sd["names"]]
    assert names == [f"immune-core-{c}-pods.{namespace}.svc.cluster.local" for c in ("blue", "green")]
    for color in ("blue", "green"):
        pods = stack.find("Service", f"immune-core-{color}-pods")["spec"]
        assert pods["clusterIP"] == "None" and pods["selector"]["immune.vertice.dev/color"] == color
    rules = yaml.safe_load(stack.find("ConfigMap", "prometheus-rules")["data"]["immune-core-slo.yaml"])
    alerts = {rule["alert"]: rule for rule in rules["groups"][0]["rules"]}
    assert {
        "ImmuneLatencyP95High",
        "ImmuneErrorRatioHigh",
        "ImmuneConsumerLagHigh",
        "ImmuneOutboxBacklog",
    } <= set(alerts)
    assert "ImmuneNoLeader" in alerts
    assert "histogram_quantile(0.95" in alerts["ImmuneLatencyP95High"]["expr"]
    prometheus = stack.find("StatefulSet", "prometheus")
    assert prometheus["spec"]["template"]["metadata"]["annotations"]["immune.vertice.dev/config-hash"]
    assert stack.exports["prometheusUrl"] == f"http://prometheus.{namespace}.svc.cluster.local:9090"


def test_prod_slo_thresholds_are_tighter(staging: RenderedStack, prod: RenderedStack) -> None:
    def p95_threshold(rendered: RenderedStack) -> float:
        rules = yaml.safe_load(rendered.find("ConfigMap", "prometheus-rules")["data"]["immune-core-slo.yaml"])
        expr = next(
            rule["expr"] for rule in rules["groups"][0]["rules"] if rule["alert"] == "ImmuneLatencyP95High"
        )
        return float(expr.rsplit(">", 1)[1])

    assert p95_threshold(prod) < p95_threshold(staging)


def test_grafana_is_provisioned_with_datasource_and_dashboard(stack: RenderedStack) -> None:
    provisioning = stack.find("ConfigMap", "grafana-provisioning")["data"]
    datasource = yaml.safe_load(provisioning["datasources.yaml"])["datasources"][0]
    assert datasource["url"] == stack.exports["prometheusUrl"] and datasource["uid"] == "prometheus"
    dashboard = json.loads(stack.find("ConfigMap", "grafana-dashboards")["data"]["immune-core.json"])
    assert dashboard["uid"] == "immune-core" and len(dashboard["panels"]) >= 6
    env = env_of(stack.find("Deployment", "grafana"), "grafana")
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "grafana-admin"


def test_operator_mode_emits_servicemonitors_and_rules_instead(prod: RenderedStack) -> None:
    operator = render("prod", {"monitoring": {"mode": "operator"}})
    kinds = {manifest["kind"] for manifest in operator.manifests}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    assert not any(
        m["metadata"]["name"] in ("prometheus", "grafana") for m in operator.of_kind("StatefulSet")
    )
    assert not [m for m in operator.of_kind("Deployment") if m["metadata"]["name"] == "grafana"]
    monitors = {m["metadata"]["name"] for m in operator.of_kind("ServiceMonitor")}
    assert monitors == {"immune-core", "kafka-exporter", "redis", "postgres"}
    rule = operator.find("PrometheusRule", "immune-core-slo")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert {r["alert"] for r in rule["spec"]["groups"][0]["rules"]} >= {
        "ImmuneNoLeader",
        "ImmuneOutboxBacklog",
    }
    dashboard = operator.find("ConfigMap", "immune-core-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert operator.exports["prometheusUrl"].startswith("http://prometheus-operated.")
    policies = {p["metadata"]["name"] for p in operator.of_kind("NetworkPolicy")}
    assert "allow-prometheus" not in policies and "allow-prometheus" in {
        p["metadata"]["name"] for p in prod.of_kind("NetworkPolicy")
    }


def test_exports_carry_what_the_gates_need(staging: RenderedStack, prod: RenderedStack) -> None:
    assert staging.exports["stableUrl"] == "http://immune.staging.example.com"
    assert staging.exports["previewUrl"] == "http://preview.immune.staging.example.com"
    assert prod.exports["stableUrl"] == "https://immune.example.com"
    for rendered in (staging, prod):
        exports = rendered.exports
        assert exports["activeColor"] == "blue" and exports["canaryWeight"] == 0
        assert set(exports["images"]) == {"blue", "green"}
        assert exports["canaryUrl"] == exports["stableUrl"]
        assert exports["prometheusUrl"].startswith("http://prometheus.")


def test_secrets_never_appear_outside_secret_objects_or_exports(stack: RenderedStack) -> None:
    secret_values = render_only_secrets(stack.stack).values()
    for manifest in stack.manifests:
        if manifest["kind"] == "Secret":
            continue
        text = json.dumps(manifest)
        assert not [value for value in secret_values if value in text], manifest["metadata"]["name"]
    exported = json.dumps(stack.exports)
    assert not [value for value in secret_values if value in exported]


def test_render_directory_option_reaches_the_provider(tmp_path: Any) -> None:
    rendered = render("staging", {"renderYamlToDirectory": str(tmp_path / "out")})
    provider = next(res for res in rendered.resources if res.type == "pulumi:providers:kubernetes")
    assert provider.inputs["renderYamlToDirectory"] == str(tmp_path / "out")
    default = next(res for res in render("staging").resources if res.type == "pulumi:providers:kubernetes")
    assert "renderYamlToDirectory" not in default.inputs


def test_components_own_every_resource_and_use_the_explicit_provider(stack: RenderedStack) -> None:
    components = {res.urn: res.type for res in stack.resources if res.type.startswith("immune:")}
    assert sorted(components.values()) == [
        "immune:image:ServiceImage",
        "immune:immune_app:ImmuneApp",
        "immune:kafka:Kafka",
        "immune:monitoring:Monitoring",
        "immune:namespace:ImmuneNamespace",
        "immune:network_policy:NetworkPolicies",
        "immune:postgres:Postgres",
        "immune:redis:Redis",
    ]
    provider = next(res for res in stack.resources if res.type == "pulumi:providers:kubernetes")
    for res in stack.resources:
        if res.type.startswith("kubernetes:"):
            assert res.parent in components, res.name
            assert res.provider.startswith(provider.urn + "::"), res.name
            # Child names derive from the component's name.
            component_name = res.parent.rsplit("::", 1)[1]
            assert res.name.startswith(component_name.split("-")[0]), (res.name, component_name)


def test_image_build_option_builds_from_app_dockerfile_and_promotes_the_digest() -> None:
    rendered = render(
        "staging",
        {
            "imageBuild": {
                "enabled": True,
                "builder": "pulumi-docker",
                "registryServer": "ghcr.io",
                "registryUsername": "ci",
            },
            "rollout": {"images": {"green": "build"}},
        },
    )
    image = next(res for res in rendered.resources if res.type == "docker:index/image:Image")
    assert image.inputs["build"]["dockerfile"].endswith("app/Dockerfile")
    assert image.inputs["imageName"] == "ghcr.io/active-immune-core/immune-core:0.1.0"
    assert image.inputs["registry"]["password"] == render_only_secrets("staging")["registryPassword"]
    green = rendered.find("Deployment", "immune-core-green")["spec"]["template"]["spec"]["containers"][0]
    assert green["image"].startswith("ghcr.io/active-immune-core/immune-core@sha256:")
    assert rendered.exports["images"]["green"] == green["image"]
    assert rendered.exports["images"]["blue"] == "ghcr.io/active-immune-core/immune-core:0.1.0"
    assert not [res for res in render("staging").resources if res.type.startswith("docker:")]


def test_gateway_mode_admits_traffic_from_the_gateway_namespace() -> None:
    rendered = render("staging", {"routing": {"mode": "gateway", "gatewayNamespace": "gateway-system"}})
    app = rendered.find("NetworkPolicy", "allow-immune-core")["spec"]
    sources = [peer for rule in app["ingress"] for peer in rule["from"]]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}
    } in sources


def test_worst_case_footprint_fits_the_quota(stack: RenderedStack) -> None:
    assert_fits_the_quota(stack)


def test_renders_are_deterministic_and_independent(staging: RenderedStack, prod: RenderedStack) -> None:
    """Several stacks in one process: a fresh run repeats the cached one exactly, exports don't leak."""
    again = render_stack("staging")

    def canonical(rendered: RenderedStack) -> list[str]:
        # Registration order follows asyncio scheduling; the content must not.
        return sorted(json.dumps(manifest, sort_keys=True) for manifest in rendered.manifests)

    assert canonical(again) == canonical(staging)
    assert again.exports == staging.exports
    assert sorted(res.urn for res in again.resources) == sorted(res.urn for res in staging.resources)
    assert all("::staging::" not in res.urn for res in prod.resources)
