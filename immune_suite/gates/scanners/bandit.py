"""bandit over the candidate's Python sources, configured by `[tool.bandit]` in pyproject.toml.

The gate's bar: zero findings at medium severity and medium confidence or above (bandit's own
`--severity-level medium --confidence-level medium` filter). Output is SARIF.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail

TOOL = "bandit"
# The shipped Python: the service, the suite, the Pulumi program, chaos probes, the locustfile.
SOURCE_DIRS = ("app", "immune_suite", "infra", "chaos", "load", "scripts")


def scan(source_dir: Path, out_dir: Path) -> ScanResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [d for d in SOURCE_DIRS if (source_dir / d).is_dir()]
    if not targets:
        return ScanResult.failed(TOOL, f"no Python source directories under {source_dir}")
    sarif, log = out_dir / "bandit.sarif", out_dir / "bandit.log"
    command = [sys.executable, "-m", "bandit", "-r", *targets, "-f", "sarif", "-o", str(sarif),
               "--severity-level", "medium", "--confidence-level", "medium", "-q"]
    if (source_dir / "pyproject.toml").exists():
        command[3:3] = ["-c", "pyproject.toml"]
    completed = run_tool(command, log, cwd=source_dir)
    artifacts = artifacts_of((sarif, "sarif"), (log, "log"))
    if completed.returncode not in (0, 1) or not sarif.exists():
        return ScanResult.failed(TOOL, f"exit {completed.returncode}: {tail(completed.stderr)}", artifacts)
    run = json.loads(sarif.read_text(encoding="utf-8"))["runs"][0]
    invocation = (run.get("invocations") or [{}])[0]
    notifications = invocation.get("toolExecutionNotifications", [])
    problems = [n.get("message", {}).get("text", "") for n in notifications]
    if problems:
        # A file bandit could not parse was not scanned: that is not a clean result.
        return ScanResult.failed(TOOL, "files not scanned: " + "; ".join(problems[:5]), artifacts)
    results = run.get("results", [])
    findings = [
        {"rule": r["ruleId"], "file": r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
         "line": r["locations"][0]["physicalLocation"].get("region", {}).get("startLine"),
         "severity": r.get("properties", {}).get("issue_severity"),
         "confidence": r.get("properties", {}).get("issue_confidence"),
         "message": r.get("message", {}).get("text", "")}
        for r in results
    ]
    by_rule = Counter(f["rule"] for f in findings)
    summary = (f"{len(findings)} findings at medium+ severity and confidence"
               + (f" ({', '.join(f'{k}x{v}' for k, v in by_rule.most_common())})" if findings else ""))
    return ScanResult(tool=TOOL, findings=len(findings), summary=summary, artifacts=artifacts,
                      details={"targets": targets, "findings": findings})
