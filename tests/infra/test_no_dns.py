"""`cluster.dns: false` (a cluster without CoreDNS): the service reaches Kafka, Redis and PostgreSQL at their
Services' ClusterIPs (Pulumi outputs; the mocks answer what an API server would allocate), and Kafka's
brokers advertise, and find their KRaft voters at, one ClusterIP Service per broker. The default (DNS) is
unchanged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from immune_infra.kafka import NO_DNS_START_SCRIPT, START_SCRIPT
from immune_infra.render import RenderedStack, fake_cluster_ip, render_only_secrets

from tests.infra.kafka_support import fake_kafka_home, pod_environment, properties
from tests.infra.support import NO_DNS, render


def _env(manifest: dict[str, Any], container: int = 0, group: str = "containers") -> dict[str, Any]:
    spec = manifest["spec"]["template"]["spec"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in spec[group][container]["env"]}


@pytest.fixture(scope="module", params=["staging", "prod"])
def no_dns(request: pytest.FixtureRequest) -> RenderedStack:
    return render(request.param, NO_DNS)


def _ip(rendered: RenderedStack, name: str) -> str:
    return fake_cluster_ip(rendered.exports["namespace"], name)


def test_default_keeps_dns_names(stack: RenderedStack) -> None:
    namespace = stack.exports["namespace"]
    app = _env(stack.find("Deployment", "immune-core-blue"))
    assert app["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"] == f"kafka.{namespace}.svc.cluster.local:9092"
    assert stack.find("ConfigMap", "kafka-scripts")["data"]["start-kafka.sh"] == START_SCRIPT
    assert "KAFKA_BROKER_ADDRESSES" not in _env(stack.find("StatefulSet", "kafka"))
    assert (
        f"@postgres.{namespace}.svc.cluster.local:5432/"
        in stack.find("Secret", "postgres-auth")["stringData"]["url"]
    )
    assert (
        f"@redis.{namespace}.svc.cluster.local:6379/0"
        in stack.find("Secret", "redis-auth")["stringData"]["url"]
    )
    services = {service["metadata"]["name"] for service in stack.of_kind("Service")}
    assert not {"kafka-0", "kafka-1", "kafka-2"} & services


def test_without_dns_the_app_connects_to_cluster_ips(no_dns: RenderedStack) -> None:
    kafka_ip, redis_ip, postgres_ip = (_ip(no_dns, name) for name in ("kafka", "redis", "postgres"))
    for color in ("blue", "green"):
        app = _env(no_dns.find("Deployment", f"immune-core-{color}"))
        assert app["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"] == f"{kafka_ip}:9092"
        # Credentials stay in Secrets; only the host part of the URLs changes.
        assert app["IMMUNE_DATABASE_URL"] == {"secretKeyRef": {"name": "postgres-auth", "key": "url"}}
    secrets = render_only_secrets(no_dns.stack)
    assert no_dns.find("Secret", "redis-auth")["stringData"]["url"] == (
        f"redis://:{secrets['redisPassword']}@{redis_ip}:6379/0"
    )
    assert no_dns.find("Secret", "postgres-auth")["stringData"]["url"] == (
        f"postgresql://immune:{secrets['postgresPassword']}@{postgres_ip}:5432/immune"
    )
    migrations = [job for job in no_dns.of_kind("Job") if "-migrate-" in job["metadata"]["name"]]
    assert len(migrations) == 2
    for job in migrations:
        wait = job["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
        assert f"pg_isready -h {postgres_ip} -p 5432" in wait
    topics = next(job for job in no_dns.of_kind("Job") if job["metadata"]["name"].startswith("kafka-topics"))
    assert _env(topics)["BOOTSTRAP"] == f"{kafka_ip}:9092"
    exporter = no_dns.find("Deployment", "kafka-exporter")["spec"]["template"]["spec"]["containers"][0]
    assert f"--kafka.server={kafka_ip}:9092" in exporter["args"]
    # Nothing the service, Kafka, Redis or PostgreSQL use names a cluster DNS name any more.
    for manifest in no_dns.manifests:
        if (
            manifest["kind"] in ("Deployment", "StatefulSet", "Job", "Secret")
            and "prometheus" not in str(manifest["metadata"]["name"])
            and "grafana" not in str(manifest["metadata"]["name"])
        ):
            assert "svc.cluster.local" not in str(manifest), manifest["metadata"]["name"]


def test_without_dns_each_broker_has_its_own_service(no_dns: RenderedStack) -> None:
    statefulset = no_dns.find("StatefulSet", "kafka")
    brokers = statefulset["spec"]["replicas"]
    addresses = []
    for ordinal in range(brokers):
        service = no_dns.find("Service", f"kafka-{ordinal}")["spec"]
        assert service["type"] == "ClusterIP" and service["publishNotReadyAddresses"] is True
        assert service["selector"]["statefulset.kubernetes.io/pod-name"] == f"kafka-{ordinal}"
        assert {port["name"]: port["port"] for port in service["ports"]} == {
            "client": 9092,
            "controller": 9093,
        }
        addresses.append(_ip(no_dns, f"kafka-{ordinal}"))
    assert _env(statefulset)["KAFKA_BROKER_ADDRESSES"] == " ".join(addresses)
    assert no_dns.find("ConfigMap", "kafka-scripts")["data"]["start-kafka.sh"] == NO_DNS_START_SCRIPT
    # The pods roll when the script changes (the config hash covers it).
    dns_hash = render(no_dns.stack).find("StatefulSet", "kafka")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert statefulset["spec"]["template"]["metadata"]["annotations"] != dns_hash


@pytest.mark.slow
def test_no_dns_broker_configs_are_accepted_by_kafka(kafka_libs: Path, tmp_path: Path) -> None:
    """The rendered script, run for every broker of prod with its pod's env, against Kafka's StorageTool."""
    stack = render("prod", NO_DNS)
    script = tmp_path / "start-kafka.sh"
    script.write_text(stack.find("ConfigMap", "kafka-scripts")["data"]["start-kafka.sh"])
    home = fake_kafka_home(tmp_path / "kafka", kafka_libs)
    addresses = [_ip(stack, f"kafka-{ordinal}") for ordinal in range(3)]
    for ordinal in range(3):
        run_dir = tmp_path / f"run-{ordinal}"
        env = {
            "PATH": os.environ["PATH"],
            **pod_environment(stack, ordinal),
            "KAFKA_HOME": str(home),
            "KAFKA_RUN_DIR": str(run_dir),
            "KAFKA_DATA_DIR": str(tmp_path / f"data-{ordinal}"),
        }
        result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        config = properties(run_dir / "server.properties")
        assert config["advertised.listeners"] == f"PLAINTEXT://{addresses[ordinal]}:9092"
        expected = [
            f"{index}@{'127.0.0.1' if index == ordinal else address}:9093"
            for index, address in enumerate(addresses)
        ]
        assert config["controller.quorum.voters"] == ",".join(expected)
        assert (run_dir / "started").read_text().strip() == f"start {run_dir / 'server.properties'}"


def test_a_service_without_a_cluster_ip_is_a_clear_error() -> None:
    from immune_infra.workload import _allocated_ip

    with pytest.raises(ValueError, match="Service kafka has no ClusterIP"):
        _allocated_ip(type("Spec", (), {"cluster_ip": "None"})(), "kafka")
    with pytest.raises(ValueError, match="no ClusterIP"):
        _allocated_ip(None, "redis")


def test_cluster_dns_must_be_a_boolean() -> None:
    from immune_infra.config import ConfigError
    from immune_infra.render import render_stack

    with pytest.raises(ConfigError, match=r"settings\.cluster\.dns"):
        render_stack("staging", {"cluster": {"dns": "sometimes"}})
    with pytest.raises(ConfigError, match=r"settings\.cluster\.coredns: unknown key"):
        render_stack("staging", {"cluster": {"coredns": False}})


def test_without_persistent_volumes_statefulsets_keep_data_in_an_emptydir() -> None:
    local = render("prod", {**NO_DNS, "cluster": {"dns": False, "persistentVolumes": False}})
    default = render("prod")
    statefulsets = {sts["metadata"]["name"]: sts for sts in local.of_kind("StatefulSet")}
    assert {"kafka", "redis", "postgres", "prometheus"} <= set(statefulsets)
    for name, sts in statefulsets.items():
        before = default.find("StatefulSet", name)
        claims = before["spec"].get("volumeClaimTemplates", [])
        assert not sts["spec"].get("volumeClaimTemplates"), name
        volumes = {volume["name"]: volume for volume in sts["spec"]["template"]["spec"].get("volumes", [])}
        if not claims:
            assert "data" not in volumes, name
            continue
        size = claims[0]["spec"]["resources"]["requests"]["storage"]
        assert volumes["data"] == {"name": "data", "emptyDir": {"sizeLimit": size}}, name

        # The containers mount the same `data` volume as before; only its source changed.
        def mounts(spec: dict[str, Any]) -> list[Any]:
            containers = spec["template"]["spec"]["containers"]
            data = [[m for m in c.get("volumeMounts", []) if m["name"] == "data"] for c in containers]
            return [found for found in data if found]

        assert mounts(sts["spec"]) == mounts(before["spec"]), name
    # The default keeps its claims and has no data emptyDir.
    for sts in default.of_kind("StatefulSet"):
        names = [volume["name"] for volume in sts["spec"]["template"]["spec"].get("volumes", [])]
        assert "data" not in names


def test_no_dns_cannot_be_rendered_without_a_cluster(tmp_path: Path) -> None:
    """The real engine's render mode allocates no ClusterIP (found running it): refused up front."""
    from immune_infra.config import ConfigError
    from immune_infra.render import render_stack

    with pytest.raises(ConfigError, match=r"cluster\.dns false needs a cluster"):
        render_stack("staging", {**NO_DNS, "renderYamlToDirectory": str(tmp_path)})
