"""detect-secrets against the reviewed baseline `.secrets.baseline`.

The candidate tree is scanned with the baseline's own plugins and filters (`scan --baseline` on a copy,
so the candidate's files are never rewritten). A finding is any secret not in the baseline, plus any
baseline entry a reviewer marked as a real secret (`is_secret: true`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail

TOOL = "detect-secrets"
BASELINE = ".secrets.baseline"


def _keys(results: dict[str, list[dict[str, Any]]]) -> set[tuple[str, str, str]]:
    return {(name, s["hashed_secret"], s["type"]) for name, secrets in results.items() for s in secrets}


def scan(source_dir: Path, out_dir: Path) -> ScanResult:
    """detect-secrets over `source_dir` against its reviewed `.secrets.baseline`; the rescanned baseline
    and the log go to `out_dir`. Findings: secrets not in the baseline plus entries marked real. A missing
    or unreadable baseline or a tool failure gives a failed result, never a raise."""
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline_path = source_dir / BASELINE
    if not baseline_path.exists():
        return ScanResult.failed(TOOL, f"no baseline {BASELINE} (bash security/update-secrets-baseline.sh)")
    try:
        baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return ScanResult.failed(TOOL, f"unreadable baseline: {exc}")
    rescan, log = out_dir / "detect-secrets.json", out_dir / "detect-secrets.log"
    shutil.copyfile(baseline_path, rescan)
    command = [
        sys.executable,
        "-m",
        "detect_secrets",
        "-C",
        str(source_dir),
        "scan",
        "--baseline",
        str(rescan),
    ]
    if not (source_dir / ".git").exists():
        command.append("--all-files")  # no git index to list files: scan the tree (baseline filters apply)
    completed = run_tool(command, log, cwd=source_dir)
    artifacts = artifacts_of((rescan, "json"), (log, "log"))
    if completed.returncode != 0:
        return ScanResult.failed(TOOL, f"exit {completed.returncode}: {tail(completed.stderr)}", artifacts)
    current = json.loads(rescan.read_text(encoding="utf-8"))
    known = _keys(baseline.get("results", {}))
    new = [
        {"file": name, "line": s.get("line_number"), "type": s["type"]}
        for name, secrets in current.get("results", {}).items()
        for s in secrets
        if (name, s["hashed_secret"], s["type"]) not in known
    ]
    confirmed = [
        {"file": name, "line": s.get("line_number"), "type": s["type"]}
        for name, secrets in current.get("results", {}).items()
        for s in secrets
        if s.get("is_secret")
    ]
    summary = f"{len(new)} secrets not in the baseline, {len(confirmed)} baseline entries confirmed as real"
    return ScanResult(
        tool=TOOL,
        findings=len(new) + len(confirmed),
        summary=summary,
        artifacts=artifacts,
        details={
            "new": new,
            "confirmed_real": confirmed,
            "baseline_entries": sum(len(v) for v in baseline.get("results", {}).values()),
        },
    )
