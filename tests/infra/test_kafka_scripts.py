"""The Kafka pods' start script, run for real against Kafka's own storage tool.

The script is executed with the environment the StatefulSet gives each pod (POD_NAME for every
ordinal, the rendered env values); `kafka-storage.sh format` is Kafka 4's StorageTool from the jars
`scripts/services/kafka.sh install` fetches, so Kafka itself validates the generated KRaft config.
Only the final `kafka-server-start.sh` is replaced, by a stub that records its argument.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from immune_infra.render import RenderedStack

from tests.infra.kafka_support import fake_kafka_home, pod_environment, properties


@pytest.mark.slow
def test_every_broker_config_is_accepted_by_kafka(
    stack: RenderedStack, kafka_libs: Path, tmp_path: Path
) -> None:
    script = stack.find("ConfigMap", "kafka-scripts")["data"]["start-kafka.sh"]
    (tmp_path / "start-kafka.sh").write_text(script)
    home = fake_kafka_home(tmp_path / "kafka", kafka_libs)
    brokers = stack.find("StatefulSet", "kafka")["spec"]["replicas"]
    cluster_ids = set()
    for ordinal in range(brokers):
        run_dir, data_dir = tmp_path / f"run-{ordinal}", tmp_path / f"data-{ordinal}"
        env = {
            "PATH": os.environ["PATH"],
            **pod_environment(stack, ordinal),
            "KAFKA_HOME": str(home),
            "KAFKA_RUN_DIR": str(run_dir),
            "KAFKA_DATA_DIR": str(data_dir),
        }
        for attempt in (1, 2):  # the second run proves `format --ignore-formatted` is idempotent
            result = subprocess.run(
                ["sh", str(tmp_path / "start-kafka.sh")], env=env, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, (
                f"broker {ordinal} attempt {attempt}: {result.stdout}{result.stderr}"
            )
        conf = properties(run_dir / "server.properties")
        assert conf["node.id"] == str(ordinal)
        voters = conf["controller.quorum.voters"].split(",")
        assert len(voters) == brokers
        assert voters[ordinal].startswith(f"{ordinal}@kafka-{ordinal}.kafka-headless.")
        assert conf["min.insync.replicas"] == env["KAFKA_MIN_INSYNC_REPLICAS"]
        meta = properties(data_dir / "logs" / "meta.properties")
        assert meta["node.id"] == str(ordinal)
        cluster_ids.add(meta["cluster.id"])
        assert (run_dir / "started").read_text().strip() == f"start {run_dir / 'server.properties'}"
    assert cluster_ids == {pod_environment(stack, 0)["KAFKA_CLUSTER_ID"]}


def test_scripts_are_posix_shell(staging: RenderedStack) -> None:
    scripts = staging.find("ConfigMap", "kafka-scripts")["data"]
    for name, text in scripts.items():
        checked = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
        assert text.startswith("#!/bin/sh\n")
