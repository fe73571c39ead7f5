"""Helpers for running the Kafka pods' start script for real (tests/infra/test_kafka_scripts.py,
tests/infra/test_no_dns.py): Kafka's jars, a fake KAFKA_HOME around its StorageTool, a pod's env."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from immune_infra.render import REPOSITORY_ROOT, RenderedStack

KAFKA_SERVICE = REPOSITORY_ROOT / "scripts" / "services" / "kafka.sh"


def kafka_lib_dir() -> Path:
    """Kafka's jars, installed by scripts/services/kafka.sh if needed (its download cache)."""
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
