"""schemathesis fuzzing of the candidate's OpenAPI: no 5xx, and responses that conform to the schema.

A fuzz run can pass on nothing: no operation tested, no positive (schema-valid) case sent, or every
positive case rejected with a 4xx (a wrong token answers 401 to everything, and 401 is no server error).
Each of these fails the scan. The per-operation counts of accepted/rejected positive cases come from
schemathesis' own report (`valid_rates`); operations whose positive cases were all refused by
authentication (`warnings.missing_auth`) are reported as a warning.

The bearer token reaches schemathesis through its config file's `${IMMUNE_API_TOKEN}` placeholder and
the environment, never the command line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail

TOOL = "schemathesis"
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
MAX_EXAMPLES_ENV = "IMMUNE_FUZZ_MAX_EXAMPLES"
SEED_ENV = "IMMUNE_FUZZ_SEED"
# A healthy candidate answers the whole run in seconds; one that cannot within this budget (e.g. a
# latency regression) fails the step now instead of holding the pipeline for many minutes.
BUDGET_ENV = "IMMUNE_FUZZ_BUDGET_S"
DEFAULT_BUDGET_S = "180"
# A fixed seed: the same candidate gets the same cases, so a verdict can be reproduced from the record.
DEFAULT_SEED = "20261125"


def scan(base_url: str, token: str | None, out_dir: Path) -> ScanResult:
    """Fuzz the OpenAPI served at `base_url` with the bearer `token` (None: unauthenticated); reports go to
    `out_dir/schemathesis/`. Findings are failed checks; a run that tested nothing counts as failed (see
    the module docstring). A tool that cannot run gives a failed result, never a raise."""
    base = base_url.rstrip("/")
    work = out_dir / "schemathesis"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "schemathesis.toml"
    config.write_text(
        'headers = { Authorization = "Bearer ${IMMUNE_API_TOKEN}" }\n' if token else "", encoding="utf-8"
    )
    report, junit, log = work / "report.json", work / "junit.xml", out_dir / "schemathesis.log"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base}/openapi.json",
        "--url",
        base,
        "--checks",
        CHECKS,
        "--max-examples",
        os.environ.get(MAX_EXAMPLES_ENV, "25"),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        os.environ.get(SEED_ENV, DEFAULT_SEED),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--wait-for-schema",
        "15",
        "--report",
        "junit,json",
        "--report-json-path",
        str(report),
        "--report-junit-path",
        str(junit),
    ]
    env = {**os.environ, "IMMUNE_API_TOKEN": token or ""}
    budget_s = float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_S))
    completed = run_tool(command, log, cwd=work, env=env, timeout_s=budget_s)
    artifacts = artifacts_of((report, "json"), (junit, "junit"), (log, "log"))
    output = tail(completed.stdout + completed.stderr)
    if not report.exists():
        return ScanResult.failed(TOOL, f"exit {completed.returncode}: {output}", artifacts)
    try:
        result = json.loads(report.read_text(encoding="utf-8"))
    except json.JSONDecodeError:  # killed at its budget, or crashed, while writing the report
        return ScanResult.failed(TOOL, f"exit {completed.returncode}, unreadable report: {output}", artifacts)
    return judge(result, artifacts)


def judge(result: dict[str, Any], artifacts: list[Any]) -> ScanResult:
    """The verdict from schemathesis' JSON report (shape of schemathesis 4.x `--report json`)."""
    operations, cases = result.get("operations", {}), result.get("test_cases", {})
    if not result.get("complete") or operations.get("tested", 0) == 0:
        return ScanResult.failed(
            TOOL,
            f"incomplete run ({result.get('stop_reason')}, {operations.get('tested', 0)} operations tested)",
            artifacts,
        )
    positive = {
        op: {
            "accepted": sum(p.get("accepted", 0) for p in phases.values()),
            "rejected": sum(p.get("rejected", 0) for p in phases.values()),
        }
        for op, phases in (result.get("valid_rates") or {}).items()
    }
    accepted = sum(p["accepted"] for p in positive.values())
    rejected = sum(p["rejected"] for p in positive.values())
    details = {
        "operations": operations,
        "test_cases": cases,
        "seed": result.get("seed"),
        "positive_cases": {"accepted": accepted, "rejected": rejected, "by_operation": positive},
    }
    if accepted + rejected == 0:
        return ScanResult.failed(
            TOOL,
            f"no positive (schema-valid) case was sent to any of the {operations['tested']} operations",
            artifacts,
            details,
        )
    if accepted == 0:
        return ScanResult.failed(
            TOOL,
            f"every positive case was rejected ({rejected} with a 4xx): the API "
            f"was not exercised (wrong token?)",
            artifacts,
            details,
        )
    failures = cases.get("unique_failures", 0) + len(result.get("errors", []))
    summary = (
        f"{operations['tested']} operations, {cases.get('generated', 0)} cases "
        f"({accepted} positive accepted, {rejected} rejected), "
        f"{cases.get('unique_failures', 0)} unique failures, {len(result.get('errors', []))} errors"
    )
    missing_auth = (result.get("warnings") or {}).get("missing_auth") or []
    warnings = (
        [
            f"every positive case refused by authentication on {len(missing_auth)} operations: "
            + ", ".join(missing_auth[:10])
        ]
        if missing_auth
        else []
    )
    return ScanResult(
        tool=TOOL,
        findings=failures,
        summary=summary,
        artifacts=artifacts,
        warnings=warnings,
        details={
            **details,
            "failures": result.get("failures", [])[:20],
            "errors": result.get("errors", [])[:20],
            "missing_auth": missing_auth,
        },
    )
