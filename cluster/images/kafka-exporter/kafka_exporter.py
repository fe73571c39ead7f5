"""Kafka metrics for Prometheus in the shape of danielqsj/kafka_exporter, whose Go module the module
proxy does not serve here (`github.com/danielqsj/kafka_exporter@v1.8.0`: 403), so the program's
`kafka-exporter` Deployment runs this instead: same flags (`--kafka.server`, `--kafka.version`,
`--web.listen-address`, `--web.telemetry-path`), same port (9308), same `/healthz`, and the same metric
names for what the dashboards and rules read:

- `kafka_brokers`: brokers in the cluster metadata.
- `kafka_topic_partitions{topic}`; `kafka_topic_partition_current_offset` / `_oldest_offset`
  `{topic,partition}`: the log end and start offsets (ListOffsets, latest/earliest).
- `kafka_consumergroup_current_offset{consumergroup,topic,partition}` (+ `_sum{consumergroup,topic}`):
  committed offsets (OffsetFetch); `kafka_consumergroup_lag` (+ `_sum`): log end minus committed, never
  below 0 (a partition the group has not committed to yet is not reported, as upstream does).
- `kafka_exporter_scrape_success`: 1 when the last collection reached the cluster, else 0 (and nothing
  else is reported: no data is not a zero lag).

Every scrape opens a client, reads, closes (15 s scrape intervals; no state to go stale). Internal
topics (`__consumer_offsets`, ...) are left out like upstream's default `--topic.filter`.
Source of the metric names: https://github.com/danielqsj/kafka_exporter#metrics
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

LOG = logging.getLogger("kafka_exporter")
DEFAULT_PORT = 9308


@dataclass
class Snapshot:
    """One reading of the cluster: offsets keyed by (topic, partition)."""

    brokers: int
    partitions: dict[str, int] = field(default_factory=dict)
    newest: dict[tuple[str, int], int] = field(default_factory=dict)
    oldest: dict[tuple[str, int], int] = field(default_factory=dict)
    committed: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)


async def read_cluster(servers: list[str], timeout_s: float) -> Snapshot:
    """Reads brokers, topics, log offsets and every consumer group's committed offsets.

    Raises whatever aiokafka raises when the cluster cannot be reached within `timeout_s` seconds.
    """
    timeout_ms = int(timeout_s * 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=timeout_ms)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, request_timeout_ms=timeout_ms
    )
    await admin.start()
    try:
        await consumer.start()
        try:
            return await _read(admin, consumer)
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def _read(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> Snapshot:
    cluster: dict[str, Any] = await admin.describe_cluster()
    snapshot = Snapshot(brokers=len(cluster.get("brokers", [])))
    partitions: list[TopicPartition] = []
    for topic in await admin.describe_topics():
        name = topic["topic"]
        if topic.get("is_internal") or name.startswith("__") or topic.get("error_code"):
            continue
        snapshot.partitions[name] = len(topic["partitions"])
        partitions += [TopicPartition(name, p["partition"]) for p in topic["partitions"]]
    if partitions:
        newest = await consumer.end_offsets(partitions)
        oldest = await consumer.beginning_offsets(partitions)
        snapshot.newest = {(tp.topic, tp.partition): offset for tp, offset in newest.items()}
        snapshot.oldest = {(tp.topic, tp.partition): offset for tp, offset in oldest.items()}
    for group_id, *_ in await admin.list_consumer_groups():
        offsets = await admin.list_consumer_group_offsets(group_id)
        snapshot.committed[group_id] = {
            (tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if meta.offset >= 0 and not tp.topic.startswith("__")
        }
    return snapshot


def metric_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The upstream exporter's metric families for one snapshot."""
    brokers = GaugeMetricFamily("kafka_brokers", "Number of Brokers in the Kafka Cluster.")
    brokers.add_metric([], snapshot.brokers)
    yield brokers
    topic_partitions = GaugeMetricFamily(
        "kafka_topic_partitions", "Number of partitions for this Topic", labels=["topic"]
    )
    for topic, count in sorted(snapshot.partitions.items()):
        topic_partitions.add_metric([topic], count)
    yield topic_partitions
    for name, offsets, text in (
        (
            "kafka_topic_partition_current_offset",
            snapshot.newest,
            "Current Offset of a Broker at Topic/Partition",
        ),
        (
            "kafka_topic_partition_oldest_offset",
            snapshot.oldest,
            "Oldest Offset of a Broker at Topic/Partition",
        ),
    ):
        family = GaugeMetricFamily(name, text, labels=["topic", "partition"])
        for (topic, partition), offset in sorted(offsets.items()):
            family.add_metric([topic, str(partition)], offset)
        yield family
    yield from _group_families(snapshot)


def _group_families(snapshot: Snapshot) -> Iterator[Metric]:
    group_labels = ["consumergroup", "topic", "partition"]
    current = GaugeMetricFamily(
        "kafka_consumergroup_current_offset",
        "Current Offset of a ConsumerGroup at Topic/Partition",
        labels=group_labels,
    )
    current_sum = GaugeMetricFamily(
        "kafka_consumergroup_current_offset_sum",
        "Current Offset of a ConsumerGroup at Topic for all partitions",
        labels=["consumergroup", "topic"],
    )
    lag = GaugeMetricFamily(
        "kafka_consumergroup_lag",
        "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
        labels=group_labels,
    )
    lag_sum = GaugeMetricFamily(
        "kafka_consumergroup_lag_sum",
        "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
        labels=["consumergroup", "topic"],
    )
    for group, offsets in sorted(snapshot.committed.items()):
        sums: dict[str, list[int]] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            behind = max(snapshot.newest.get((topic, partition), offset) - offset, 0)
            current.add_metric([group, topic, str(partition)], offset)
            lag.add_metric([group, topic, str(partition)], behind)
            totals = sums.setdefault(topic, [0, 0])
            totals[0] += offset
            totals[1] += behind
        for topic, (offset_total, lag_total) in sorted(sums.items()):
            current_sum.add_metric([group, topic], offset_total)
            lag_sum.add_metric([group, topic], lag_total)
    yield from (current, current_sum, lag, lag_sum)


class KafkaCollector(Collector):
    """Reads the cluster on every scrape; a failed read yields `kafka_exporter_scrape_success 0` only."""

    def __init__(self, servers: list[str], timeout_s: float) -> None:
        self._servers = servers
        self._timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "kafka_exporter_scrape_success", "1 if the last scrape read the cluster, else 0."
        )
        try:
            snapshot = asyncio.run(
                asyncio.wait_for(read_cluster(self._servers, self._timeout_s), self._timeout_s * 2)
            )
        except Exception as error:
            LOG.warning("cannot read the Kafka cluster at %s: %s", ",".join(self._servers), error)
            success.add_metric([], 0)
            yield success
            return
        success.add_metric([], 1)
        yield success
        yield from metric_families(snapshot)


def make_handler(registry: CollectorRegistry, telemetry_path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == telemetry_path:
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                self._reply(200, "text/plain; charset=utf-8", b"ok")
            elif path == "/":
                page = (
                    "<html><head><title>Kafka Exporter</title></head><body><h1>Kafka Exporter</h1>"
                    f'<p><a href="{telemetry_path}">Metrics</a></p></body></html>'
                )
                self._reply(200, "text/html; charset=utf-8", page.encode())
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            LOG.debug(format, *args)

    return Handler


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:9308`, `0.0.0.0:9308`, `127.0.0.1:9308` -> (host, port); an empty host listens everywhere."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"bad --web.listen-address {address!r} (want [host]:port)")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104  # nosec B104 - a pod listens on its IP


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kafka_exporter", description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--kafka.server",
        dest="servers",
        action="append",
        default=[],
        help="host:port of a broker (repeatable); default kafka:9092",
    )
    parser.add_argument(
        "--kafka.version",
        dest="kafka_version",
        default="",
        help="accepted for compatibility; the client negotiates API versions itself",
    )
    parser.add_argument(
        "--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}", type=parse_listen_address
    )
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    parser.add_argument(
        "--kafka.timeout",
        dest="timeout_s",
        type=float,
        default=10.0,
        help="seconds a scrape may spend on one Kafka request",
    )
    parser.add_argument(
        "--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"]
    )
    args = parser.parse_args(argv)
    servers: list[str] = []
    for value in args.servers or ["kafka:9092"]:
        servers += [server for server in value.split(",") if server]
    args.servers = servers
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    level = {"warn": "WARNING"}.get(args.log_level, args.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KafkaCollector(args.servers, args.timeout_s))
    server = ThreadingHTTPServer(args.listen, make_handler(registry, args.telemetry_path))
    server.daemon_threads = True

    # As PID 1 in a container, Python ignores SIGTERM unless it handles it: stop serving, exit 0.
    def stop(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received %s, shutting down", signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("serving %s on %s:%d for %s", args.telemetry_path, *args.listen, ",".join(args.servers))
    server.serve_forever()
    server.server_close()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
