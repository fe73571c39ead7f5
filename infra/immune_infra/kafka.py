"""Apache Kafka in KRaft mode (official `apache/kafka` image): StatefulSet, topics Job, PDB, exporter.

Every broker is also a KRaft controller (combined mode), so the broker count is the quorum size.
The image's own entrypoint writes into /opt/kafka/config, which a read-only root filesystem forbids;
the start script below writes `server.properties` into an emptyDir instead and runs the same
`kafka-storage.sh format` / `kafka-server-start.sh` steps the image would.
"""

from __future__ import annotations

import base64
import uuid

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import KafkaSettings, StackSettings
from immune_infra.footprint import KAFKA_EXPORTER, KAFKA_TOPICS_JOB
from immune_infra.workload import (
    MOUNT_API_TOKEN,
    TMP_PATH,
    container_security_context,
    content_hash,
    data_claims,
    empty_dir,
    field_env,
    labels,
    mount,
    plain_env,
    pod_security_context,
    resources,
    service_address,
    service_dns,
    with_data,
)

CLIENT_PORT = 9092
CONTROLLER_PORT = 9093
EXPORTER_PORT = 9308
STATEFULSET_NAME = "kafka"
HEADLESS_NAME = "kafka-headless"
SCRIPTS_NAME = "kafka-scripts"

START_SCRIPT = r"""#!/bin/sh
# Renders server.properties for this broker from the pod's ordinal, formats storage once, starts Kafka.
set -eu
kafka_home="${KAFKA_HOME:-/opt/kafka}"
run_dir="${KAFKA_RUN_DIR:-/var/run/kafka}"
data_dir="${KAFKA_DATA_DIR:-/var/lib/kafka/data}"
ordinal="${POD_NAME##*-}"
conf="$run_dir/server.properties"
voters=""
i=0
while [ "$i" -lt "$KAFKA_BROKERS" ]; do
  voter="${i}@${STATEFULSET_NAME}-${i}.${HEADLESS_SERVICE}.${POD_NAMESPACE}.svc.cluster.local:9093"
  voters="${voters:+${voters},}${voter}"
  i=$((i + 1))
done
mkdir -p "$run_dir/logs" "$data_dir/logs"
cat > "$conf" <<PROPERTIES
process.roles=broker,controller
node.id=${ordinal}
controller.quorum.voters=${voters}
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
advertised.listeners=PLAINTEXT://${POD_NAME}.${HEADLESS_SERVICE}.${POD_NAMESPACE}.svc.cluster.local:9092
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=${data_dir}/logs
num.partitions=${KAFKA_PARTITIONS}
default.replication.factor=${KAFKA_REPLICATION_FACTOR}
min.insync.replicas=${KAFKA_MIN_INSYNC_REPLICAS}
offsets.topic.replication.factor=${KAFKA_REPLICATION_FACTOR}
transaction.state.log.replication.factor=${KAFKA_REPLICATION_FACTOR}
transaction.state.log.min.isr=${KAFKA_MIN_INSYNC_REPLICAS}
auto.create.topics.enable=false
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=3000
PROPERTIES
"$kafka_home/bin/kafka-storage.sh" format --ignore-formatted --cluster-id "$KAFKA_CLUSTER_ID" --config "$conf"
exec "$kafka_home/bin/kafka-server-start.sh" "$conf"
"""

TOPICS_SCRIPT = r"""#!/bin/sh
# Waits for the cluster, then creates each topic if missing (idempotent: safe to re-run).
set -eu
attempt=0
until /opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server "$BOOTSTRAP" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then echo "kafka not reachable at $BOOTSTRAP" >&2; exit 1; fi
  sleep 5
done
for topic in $TOPICS; do
  /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" \
    --config "min.insync.replicas=$MIN_INSYNC_REPLICAS"
done
/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --describe
"""


# Without cluster DNS (settings.cluster.dns false) a broker is reached at its own ClusterIP Service
# (`kafka-<ordinal>`, the addresses in KAFKA_BROKER_ADDRESSES, in ordinal order). A broker names itself
# 127.0.0.1 among the KRaft voters, so it never has to reach its own pod through a Service (hairpin).
_DNS_VOTER = (
    '  voter="${i}@${STATEFULSET_NAME}-${i}.${HEADLESS_SERVICE}.${POD_NAMESPACE}.svc.cluster.local:9093"'
)
_DNS_ADVERTISED = (
    "advertised.listeners=PLAINTEXT://${POD_NAME}.${HEADLESS_SERVICE}.${POD_NAMESPACE}.svc.cluster.local:9092"
)
_ADDRESS_FUNCTIONS = r"""broker_address() {
  # The ClusterIP of broker $1's own Service: word $1 + 1 of KAFKA_BROKER_ADDRESSES.
  echo "$KAFKA_BROKER_ADDRESSES" | cut -d' ' -f"$(($1 + 1))"
}
voter_address() {
  if [ "$1" = "$ordinal" ]; then echo 127.0.0.1; else broker_address "$1"; fi
}
voters=""
"""
NO_DNS_START_SCRIPT = (
    START_SCRIPT.replace('voters=""\n', _ADDRESS_FUNCTIONS, 1)
    .replace(_DNS_VOTER, '  voter="${i}@$(voter_address "$i"):9093"', 1)
    .replace(_DNS_ADVERTISED, 'advertised.listeners=PLAINTEXT://$(broker_address "$ordinal"):9092', 1)
)


def start_script(dns: bool) -> str:
    """The broker's start script: DNS names for voters and the advertised listener, or ClusterIPs."""
    return START_SCRIPT if dns else NO_DNS_START_SCRIPT


def broker_service_name(ordinal: int) -> str:
    """One ClusterIP Service per broker (cluster.dns false only): a stable address for that pod."""
    return f"{STATEFULSET_NAME}-{ordinal}"


def cluster_id(namespace: str) -> str:
    """KRaft needs a base64 UUID fixed for the cluster's life; derive it from the namespace."""
    raw = uuid.uuid5(uuid.NAMESPACE_DNS, f"kafka.{namespace}.active-immune-core").bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def bootstrap_servers(namespace: str) -> str:
    return f"{service_dns(STATEFULSET_NAME, namespace)}:{CLIENT_PORT}"


def _scripts_volume() -> k8s.core.v1.VolumeArgsDict:
    return {"name": "scripts", "config_map": {"name": SCRIPTS_NAME, "default_mode": 0o555}}


class Kafka(pulumi.ComponentResource):
    bootstrap_servers: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("immune:kafka:Kafka", name, None, opts)
        kafka = settings.kafka
        self._provider = provider
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        broker_labels = labels("kafka", "broker")
        dns = settings.cluster.dns
        script = start_script(dns)

        scripts = k8s.core.v1.ConfigMap(
            f"{name}-scripts",
            metadata={"name": SCRIPTS_NAME, "namespace": namespace, "labels": broker_labels},
            data={"start-kafka.sh": script, "create-topics.sh": TOPICS_SCRIPT},
            opts=child,
        )
        self._services(name, namespace, broker_labels)
        if dns:
            self.bootstrap_servers = pulumi.Output.from_input(bootstrap_servers(settings.namespace))
            broker_addresses: pulumi.Output[str] | None = None
        else:
            self.bootstrap_servers = pulumi.Output.concat(
                service_address(self.service, STATEFULSET_NAME, settings.namespace, dns=False),
                f":{CLIENT_PORT}",
            )
            broker_addresses = self._broker_addresses(name, settings, namespace, broker_labels)
        self.statefulset = self._statefulset(
            name,
            settings,
            namespace,
            broker_labels,
            broker_addresses,
            depends_on=[scripts, self.headless_service],
        )
        self.pdb = self._pdb(name, kafka, namespace, broker_labels)
        self.topics_job = self._topics_job(name, settings, namespace, scripts)
        self.exporter = self._exporter(name, settings, namespace)
        self.register_outputs({"bootstrap_servers": self.bootstrap_servers})

    def _services(self, name: str, namespace: pulumi.Input[str], broker_labels: dict[str, str]) -> None:
        """The headless Service the brokers find each other by, and the client Service."""
        child = pulumi.ResourceOptions(parent=self, provider=self._provider)
        self.headless_service = k8s.core.v1.Service(
            f"{name}-headless",
            metadata={"name": HEADLESS_NAME, "namespace": namespace, "labels": broker_labels},
            spec={
                "cluster_ip": "None",
                # Brokers must resolve each other before they are ready, or the quorum never forms.
                "publish_not_ready_addresses": True,
                "selector": broker_labels,
                "ports": [
                    {"name": "client", "port": CLIENT_PORT, "target_port": "client"},
                    {"name": "controller", "port": CONTROLLER_PORT, "target_port": "controller"},
                ],
            },
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": STATEFULSET_NAME, "namespace": namespace, "labels": broker_labels},
            spec={
                "type": "ClusterIP",
                "selector": broker_labels,
                "ports": [{"name": "client", "port": CLIENT_PORT, "target_port": "client"}],
            },
            opts=child,
        )

    def _statefulset(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        broker_labels: dict[str, str],
        broker_addresses: pulumi.Output[str] | None,
        depends_on: list[pulumi.Resource],
    ) -> k8s.apps.v1.StatefulSet:
        """The brokers, rolled when their start script or settings change (the config-hash annotation)."""
        kafka = settings.kafka
        script = start_script(settings.cluster.dns)
        config_hash = content_hash(script, kafka.model_dump(mode="json"))
        return k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={"name": STATEFULSET_NAME, "namespace": namespace, "labels": broker_labels},
            spec={
                "service_name": HEADLESS_NAME,
                "replicas": kafka.brokers,
                # All voters must start together for the first election; ordered start would deadlock.
                "pod_management_policy": "Parallel",
                "selector": {"match_labels": broker_labels},
                "update_strategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {
                        "labels": broker_labels,
                        "annotations": {"immune.vertice.dev/config-hash": config_hash},
                    },
                    "spec": with_data(
                        self._pod_spec(settings, kafka, broker_labels, broker_addresses),
                        settings.cluster.persistent_volumes,
                        kafka.storage,
                    ),
                },
                "volume_claim_templates": data_claims(
                    settings.cluster.persistent_volumes, kafka.storage, kafka.storage_class
                ),
            },
            opts=pulumi.ResourceOptions(parent=self, provider=self._provider, depends_on=depends_on),
        )

    def _pdb(
        self, name: str, kafka: KafkaSettings, namespace: pulumi.Input[str], broker_labels: dict[str, str]
    ) -> k8s.policy.v1.PodDisruptionBudget:
        pdb_spec: k8s.policy.v1.PodDisruptionBudgetSpecArgsDict = {
            "selector": {"match_labels": broker_labels}
        }
        if kafka.brokers > 1:
            # Voluntary evictions may never take the cluster below min.insync.replicas.
            pdb_spec["min_available"] = kafka.min_insync_replicas
        else:
            # A single broker cannot stay available through a drain; don't block node maintenance.
            pdb_spec["max_unavailable"] = 1
        return k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={"name": "kafka", "namespace": namespace, "labels": broker_labels},
            spec=pdb_spec,
            opts=pulumi.ResourceOptions(parent=self, provider=self._provider),
        )

    def _broker_addresses(
        self, name: str, settings: StackSettings, namespace: pulumi.Input[str], broker_labels: dict[str, str]
    ) -> pulumi.Output[str]:
        """Per-broker ClusterIP Services; their addresses, space-separated in ordinal order."""
        addresses = []
        for ordinal in range(settings.kafka.brokers):
            service_name = broker_service_name(ordinal)
            service = k8s.core.v1.Service(
                f"{name}-broker-{ordinal}",
                metadata={"name": service_name, "namespace": namespace, "labels": broker_labels},
                spec={
                    "type": "ClusterIP",
                    # The voters must reach each other before any of them is ready.
                    "publish_not_ready_addresses": True,
                    "selector": {
                        **broker_labels,
                        "statefulset.kubernetes.io/pod-name": f"{STATEFULSET_NAME}-{ordinal}",
                    },
                    "ports": [
                        {"name": "client", "port": CLIENT_PORT, "target_port": "client"},
                        {"name": "controller", "port": CONTROLLER_PORT, "target_port": "controller"},
                    ],
                },
                opts=pulumi.ResourceOptions(parent=self, provider=self._provider),
            )
            addresses.append(service_address(service, service_name, settings.namespace, dns=False))
        return pulumi.Output.all(*addresses).apply(lambda values: " ".join(values))

    @staticmethod
    def _pod_spec(
        settings: StackSettings,
        kafka: KafkaSettings,
        broker_labels: dict[str, str],
        broker_addresses: pulumi.Output[str] | None,
    ) -> k8s.core.v1.PodSpecArgsDict:
        anti_affinity_term: k8s.core.v1.PodAffinityTermArgsDict = {
            "label_selector": {"match_labels": broker_labels},
            "topology_key": "kubernetes.io/hostname",
        }
        affinity: k8s.core.v1.AffinityArgsDict
        if kafka.brokers > 1 and not settings.cluster.single_node:
            # Two brokers on one node would let a single node failure cost the quorum (a single-node
            # cluster has no choice: there the spread is only preferred, and the quorum shares the node).
            affinity = {
                "pod_anti_affinity": {
                    "required_during_scheduling_ignored_during_execution": [anti_affinity_term]
                }
            }
        else:
            affinity = {
                "pod_anti_affinity": {
                    "preferred_during_scheduling_ignored_during_execution": [
                        {"weight": 100, "pod_affinity_term": anti_affinity_term}
                    ]
                }
            }
        return {
            "automount_service_account_token": MOUNT_API_TOKEN,
            "security_context": pod_security_context(),
            "termination_grace_period_seconds": 60,
            "affinity": affinity,
            "topology_spread_constraints": [
                {
                    "max_skew": 1,
                    "topology_key": "topology.kubernetes.io/zone",
                    "when_unsatisfiable": "ScheduleAnyway",
                    "label_selector": {"match_labels": broker_labels},
                }
            ],
            "containers": [
                {
                    "name": "kafka",
                    "image": kafka.image,
                    "image_pull_policy": "IfNotPresent",
                    "command": ["/bin/sh", "/opt/immune/start-kafka.sh"],
                    "env": [
                        field_env("POD_NAME", "metadata.name"),
                        field_env("POD_NAMESPACE", "metadata.namespace"),
                        plain_env("STATEFULSET_NAME", STATEFULSET_NAME),
                        plain_env("HEADLESS_SERVICE", HEADLESS_NAME),
                        plain_env("KAFKA_CLUSTER_ID", cluster_id(settings.namespace)),
                        plain_env("KAFKA_BROKERS", str(kafka.brokers)),
                        plain_env("KAFKA_PARTITIONS", str(kafka.partitions)),
                        plain_env("KAFKA_REPLICATION_FACTOR", str(kafka.replication_factor)),
                        plain_env("KAFKA_MIN_INSYNC_REPLICAS", str(kafka.min_insync_replicas)),
                        plain_env("KAFKA_HEAP_OPTS", kafka.heap),
                        plain_env("LOG_DIR", "/var/run/kafka/logs"),
                        *(
                            [plain_env("KAFKA_BROKER_ADDRESSES", broker_addresses)]
                            if broker_addresses is not None
                            else []
                        ),
                    ],
                    "ports": [
                        {"name": "client", "container_port": CLIENT_PORT},
                        {"name": "controller", "container_port": CONTROLLER_PORT},
                    ],
                    "readiness_probe": {
                        "tcp_socket": {"port": "client"},
                        "initial_delay_seconds": 10,
                        "period_seconds": 10,
                        "failure_threshold": 6,
                    },
                    "liveness_probe": {
                        "tcp_socket": {"port": "controller"},
                        "initial_delay_seconds": 60,
                        "period_seconds": 20,
                        "failure_threshold": 6,
                    },
                    "resources": resources(kafka.resources),
                    "security_context": container_security_context(),
                    "volume_mounts": [
                        mount("data", "/var/lib/kafka/data"),
                        mount("scripts", "/opt/immune", read_only=True),
                        mount("run", "/var/run/kafka"),
                        mount("tmp", TMP_PATH),
                    ],
                }
            ],
            "volumes": [_scripts_volume(), empty_dir("run", "256Mi"), empty_dir("tmp", "128Mi")],
        }

    def _topics_job(
        self, name: str, settings: StackSettings, namespace: pulumi.Input[str], scripts: k8s.core.v1.ConfigMap
    ) -> k8s.batch.v1.Job:
        kafka = settings.kafka
        # Jobs are immutable: a change of topics or durability settings creates a new, named Job.
        spec_hash = content_hash(
            kafka.topics,
            kafka.partitions,
            kafka.replication_factor,
            kafka.min_insync_replicas,
            kafka.image,
            length=8,
        )
        job_labels = labels("kafka", "topics")
        return k8s.batch.v1.Job(
            f"{name}-topics",
            metadata={"name": f"kafka-topics-{spec_hash}", "namespace": namespace, "labels": job_labels},
            spec={
                "backoff_limit": 6,
                "template": {
                    "metadata": {"labels": job_labels},
                    "spec": {
                        "restart_policy": "OnFailure",
                        "automount_service_account_token": MOUNT_API_TOKEN,
                        "security_context": pod_security_context(fs_group=False),
                        "containers": [
                            {
                                "name": "create-topics",
                                "image": kafka.image,
                                "image_pull_policy": "IfNotPresent",
                                "command": ["/bin/sh", "/opt/immune/create-topics.sh"],
                                "env": [
                                    plain_env("BOOTSTRAP", self.bootstrap_servers),
                                    plain_env("TOPICS", " ".join(kafka.topics)),
                                    plain_env("PARTITIONS", str(kafka.partitions)),
                                    plain_env("REPLICATION_FACTOR", str(kafka.replication_factor)),
                                    plain_env("MIN_INSYNC_REPLICAS", str(kafka.min_insync_replicas)),
                                    plain_env("KAFKA_HEAP_OPTS", "-Xms64m -Xmx256m"),
                                    plain_env("LOG_DIR", f"{TMP_PATH}/kafka-logs"),
                                ],
                                "resources": resources(KAFKA_TOPICS_JOB),
                                "security_context": container_security_context(),
                                "volume_mounts": [
                                    mount("scripts", "/opt/immune", read_only=True),
                                    mount("tmp", TMP_PATH),
                                ],
                            }
                        ],
                        "volumes": [_scripts_volume(), empty_dir("tmp", "64Mi")],
                    },
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, provider=self._provider, depends_on=[scripts, self.statefulset, self.service]
            ),
        )

    def _exporter(
        self, name: str, settings: StackSettings, namespace: pulumi.Input[str]
    ) -> k8s.apps.v1.Deployment:
        exporter_labels = labels("kafka-exporter", "metrics")
        deployment = k8s.apps.v1.Deployment(
            f"{name}-exporter",
            metadata={"name": "kafka-exporter", "namespace": namespace, "labels": exporter_labels},
            spec={
                "replicas": 1,
                "selector": {"match_labels": exporter_labels},
                "template": {
                    "metadata": {"labels": exporter_labels},
                    "spec": {
                        "automount_service_account_token": MOUNT_API_TOKEN,
                        "security_context": pod_security_context(fs_group=False),
                        "containers": [
                            {
                                "name": "kafka-exporter",
                                "image": settings.kafka.exporter_image,
                                "image_pull_policy": "IfNotPresent",
                                # Kafka 4 refuses the old protocol versions the exporter's client defaults to.
                                "args": [
                                    pulumi.Output.concat("--kafka.server=", self.bootstrap_servers),
                                    "--kafka.version=3.6.0",
                                ],
                                "ports": [{"name": "metrics", "container_port": EXPORTER_PORT}],
                                "readiness_probe": {
                                    "http_get": {"path": "/healthz", "port": "metrics"},
                                    "period_seconds": 15,
                                },
                                "liveness_probe": {
                                    "http_get": {"path": "/healthz", "port": "metrics"},
                                    "initial_delay_seconds": 30,
                                    "period_seconds": 30,
                                },
                                "resources": resources(KAFKA_EXPORTER),
                                "security_context": container_security_context(),
                            }
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, provider=self._provider, depends_on=[self.statefulset]),
        )
        self.exporter_service = k8s.core.v1.Service(
            f"{name}-exporter-service",
            metadata={"name": "kafka-exporter", "namespace": namespace, "labels": exporter_labels},
            spec={
                "selector": exporter_labels,
                "ports": [{"name": "metrics", "port": EXPORTER_PORT, "target_port": "metrics"}],
            },
            opts=pulumi.ResourceOptions(parent=self, provider=self._provider),
        )
        return deployment
