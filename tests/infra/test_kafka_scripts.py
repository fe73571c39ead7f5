"""The Kafka pods' start script, run for real against Kafka's own storage tool.

The script is executed with the environment the StatefulSet gives each pod (POD_NAME for every
ordinal, the rendered env values); `kafka-storage.sh format` is Kafka 4's StorageTool from the jars
`scripts/services/kafka.sh install` fetches, so Kafka itself validates the generated KRaft config.
Only the final `kafka-server-start.sh` is replaced, by a stub that records its argument.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from immune_infra.render import REPOSITORY_ROOT, RenderedStack

KAFKA_SERVICE = REPOSITORY_ROOT / "scripts" / "services" / "kafka.sh"


@pytest.fixture(scope="module")
def kafka_libs() -> Path:
    subprocess.run([str(KAFKA_SERVICE), "install"], check=True, capture_output=True, timeout=900)
    # Where scripts/services keeps its downloads (docs/architecture.md).
    cache = Path(os.environ.get("IMMUNE_CACHE_DIR", Path.home() / ".cache" / "active-immune-core"))
    libs = sorted(cache.glob("kafka-4*/libs"))
    assert libs, f"no Kafka jars under {cache}"
    return libs[-1]


def fake_kafka_home(root: Path, libs: Path) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    java = shutil.which("java") or "java"
    (bin_dir / "kafka-storage.sh").write_text(
        f'#!/bin/sh\nexec {java} -cp "{libs}/*" kafka.tools.StorageTool "$@"\n'
    )
    (bin_dir / "kafka-server-start.sh").write_text('#!/bin/sh\necho "start $1" > "$KAFKA_RUN_DIR/started"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    return root


def pod_environment(stack: RenderedStack, ordinal: int) -> dict[str, str]:
    statefulset = stack.find("StatefulSet", "kafka")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    env["POD_NAME"] = f"{statefulset['metadata']['name']}-{ordinal}"
    env["POD_NAMESPACE"] = statefulset["metadata"]["namespace"]
    return env


def properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


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
