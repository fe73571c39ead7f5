"""What the manifest checks share (tests/infra/test_security_scan.py, test_stacks.py, test_local_cluster.py):
the pinned Kubernetes schema version, the custom kinds, checkov's curated list and a checkov run."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml
from immune_infra.render import REPOSITORY_ROOT

KUBERNETES_VERSION = "1.34"
CHECKOV = REPOSITORY_ROOT / "scripts" / "checkov.sh"
CHECK_LIST = REPOSITORY_ROOT / "security" / "checkov" / "k8s-checks.yaml"
DOCKERFILE = REPOSITORY_ROOT / "app" / "Dockerfile"
CUSTOM_KINDS = {"HTTPRoute", "ServiceMonitor", "PrometheusRule", "Middleware"}


def _check_list() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CHECK_LIST.read_text())
    return data


def _passed_ids(*args: str) -> set[str]:
    """Run checkov without --quiet to learn which checks passed (and therefore ran)."""
    result = subprocess.run(
        [str(CHECKOV), *args, "--output", "json", "--compact"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [check for item in reports for check in item["results"].get("failed_checks", [])]
    assert failed == [], [(check["check_id"], check["resource"], check["check_name"]) for check in failed]
    return {check["check_id"] for item in reports for check in item["results"].get("passed_checks", [])}
