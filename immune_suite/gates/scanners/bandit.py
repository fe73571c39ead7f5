"""bandit over the candidate's Python sources, configured by `[tool.bandit]` in pyproject.toml.

The gate's bar: zero findings at medium severity and medium confidence or above (bandit's own
`--severity-level medium --confidence-level medium` filter), and every file scanned. The verdict is read
from bandit's JSON report: a file bandit could not parse (an invalid UTF-8 byte, a syntax error) is
listed only there, under `errors`, and was not scanned at all, so it fails the gate, named. A run that
scanned no file fails too. The SARIF report (a second run) is kept as the artifact for code scanning;
it does not list unparsed files.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail

TOOL = "bandit"
# The shipped Python: the service, the suite, the Pulumi program, chaos probes, the locustfile.
SOURCE_DIRS = ("app", "immune_suite", "infra", "chaos", "load", "scripts")


def scan(source_dir: Path, out_dir: Path) -> ScanResult:
    """bandit over the shipped Python under `source_dir` (see the module docstring for the bar); reports
    (`bandit.json`, `bandit.sarif`, the log) go to `out_dir`. A tool that cannot run, or that scans no file
    or leaves one unparsed, gives a failed result, never a raise."""
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [d for d in SOURCE_DIRS if (source_dir / d).is_dir()]
    if not targets:
        return ScanResult.failed(TOOL, f"no Python source directories under {source_dir}")
    report, sarif = out_dir / "bandit.json", out_dir / "bandit.sarif"
    base = [
        sys.executable,
        "-m",
        "bandit",
        "-r",
        *targets,
        "--severity-level",
        "medium",
        "--confidence-level",
        "medium",
        "-q",
    ]
    if (source_dir / "pyproject.toml").exists():
        base[3:3] = ["-c", "pyproject.toml"]
    completed = run_tool([*base, "-f", "json", "-o", str(report)], out_dir / "bandit.log", cwd=source_dir)
    artifacts = artifacts_of((report, "json"), (out_dir / "bandit.log", "log"))
    if completed.returncode not in (0, 1) or not report.exists():
        return ScanResult.failed(TOOL, f"exit {completed.returncode}: {tail(completed.stderr)}", artifacts)
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return ScanResult.failed(TOOL, f"unreadable JSON report: {exc}", artifacts)
    sarif_run = run_tool(
        [*base, "-f", "sarif", "-o", str(sarif)], out_dir / "bandit-sarif.log", cwd=source_dir
    )
    artifacts += artifacts_of((sarif, "sarif"))
    return judge(data, targets, artifacts, sarif_ok=sarif_run.returncode in (0, 1) and sarif.exists())


def judge(
    data: dict[str, Any], targets: list[str], artifacts: list[Any], sarif_ok: bool = True
) -> ScanResult:
    """The verdict from bandit's JSON report: unscanned files and an empty scan fail; findings count."""
    errors = [{"file": e.get("filename", "?"), "reason": e.get("reason", "")} for e in data.get("errors", [])]
    scanned = [name for name in data.get("metrics", {}) if name != "_totals"]
    details: dict[str, Any] = {"targets": targets, "files_scanned": len(scanned), "errors": errors}
    if errors:
        named = "; ".join(f"{e['file']} ({e['reason']})" for e in errors[:10])
        return ScanResult.failed(
            TOOL, f"{len(errors)} files bandit could not scan: {named}", artifacts, details
        )
    if not scanned:
        return ScanResult.failed(
            TOOL, f"no Python file scanned under {', '.join(targets)}", artifacts, details
        )
    if not sarif_ok:
        return ScanResult.failed(TOOL, "the SARIF report could not be written", artifacts, details)
    findings = [
        {
            "rule": r.get("test_id"),
            "file": r.get("filename"),
            "line": r.get("line_number"),
            "severity": r.get("issue_severity"),
            "confidence": r.get("issue_confidence"),
            "message": r.get("issue_text", ""),
        }
        for r in data.get("results", [])
    ]
    by_rule = Counter(f["rule"] for f in findings)
    summary = f"{len(findings)} findings at medium+ severity and confidence in {len(scanned)} files" + (
        f" ({', '.join(f'{k}x{v}' for k, v in by_rule.most_common())})" if findings else ""
    )
    return ScanResult(
        tool=TOOL,
        findings=len(findings),
        summary=summary,
        artifacts=artifacts,
        details={**details, "findings": findings},
    )
