"""checkov on the rendered Kubernetes manifests and on `app/Dockerfile`, offline, curated checks only.

checkov lives in its own virtualenv (`scripts/checkov.sh`, its pins conflict with ours) and runs with
`--skip-download`. The manifests come from the Pulumi program rendered without a cluster
(`immune_infra.render.render_stack`); if that cannot be done the scan fails, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail

TOOL = "checkov"
CHECKOV_SCRIPT = Path("scripts") / "checkov.sh"
CURATED_DIR = Path("security") / "checkov"


def curated_checks(source_dir: Path) -> tuple[list[str], dict[str, str]]:
    """(check ids to run, skipped id -> reason) from the curated list in security/checkov/."""
    checks: list[str] = []
    skips: dict[str, str] = {}
    for path in sorted((source_dir / CURATED_DIR).glob("*.y*ml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in document.get("checks", []) or document.get("check", []):
            checks.append(entry["id"] if isinstance(entry, dict) else str(entry))
        for entry in document.get("skips", []) or document.get("skip", []) or document.get("skip-check", []):
            if isinstance(entry, dict):
                skips[str(entry["id"])] = str(entry.get("reason", ""))
            else:
                skips[str(entry)] = ""
    return checks, skips


RENDER_STACKS = ("staging", "prod")
_RENDER_SCRIPT = """
import sys
from pathlib import Path
from immune_infra.render import render_stack, write_manifests
for stack in sys.argv[2:]:
    write_manifests(render_stack(stack), Path(sys.argv[1]) / stack)
"""


def render_manifests(source_dir: Path, out_dir: Path, stacks: tuple[str, ...] = RENDER_STACKS) -> list[Path]:
    """The candidate's Pulumi program rendered under mocks (no cluster, no engine), one folder per stack.

    It runs in a subprocess: the candidate's own `infra/` comes first on the path, and Pulumi's
    process-global mock state never touches the caller.
    """
    target = out_dir / "manifests"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(source_dir / "infra"), os.environ.get("PYTHONPATH")]))}
    completed = run_tool([sys.executable, "-c", _RENDER_SCRIPT, str(target), *stacks],
                         out_dir / "checkov-render.log", cwd=source_dir, env=env, timeout_s=300)
    if completed.returncode != 0:
        raise RuntimeError(f"render failed (exit {completed.returncode}): {tail(completed.stderr)}")
    return sorted(target.rglob("*.y*ml"))


def _run(source_dir: Path, out_dir: Path, label: str, target_args: list[str], framework: str,
         checks: list[str], skips: dict[str, str]) -> tuple[dict[str, Any] | None, str | None, list[Path]]:
    report_dir = out_dir / f"checkov-{label}"
    report_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"checkov-{label}.log"
    command = ["bash", str(source_dir / CHECKOV_SCRIPT), *target_args, "--framework", framework,
               "-o", "json", "-o", "sarif", "--output-file-path", str(report_dir), "--compact", "--quiet"]
    if checks:
        command += ["--check", ",".join(checks)]
    if skips:
        command += ["--skip-check", ",".join(skips)]
    completed = run_tool(command, log, cwd=source_dir, timeout_s=900)
    files = [log, *sorted(report_dir.iterdir())]
    report_path = report_dir / "results_json.json"
    if completed.returncode not in (0, 1) or not report_path.exists():
        output = tail(completed.stdout + completed.stderr)
        return None, f"{label}: exit {completed.returncode}: {output}", files
    data = json.loads(report_path.read_text(encoding="utf-8"))
    reports = data if isinstance(data, list) else [data]
    merged: dict[str, Any] = {"passed": 0, "failed": 0, "parsing_errors": 0, "resources": 0,
                              "failed_checks": []}
    for report in reports:
        summary = report.get("summary", {})
        merged["passed"] += summary.get("passed", 0)
        merged["failed"] += summary.get("failed", 0)
        merged["parsing_errors"] += summary.get("parsing_errors", 0)
        merged["resources"] += summary.get("resource_count", 0)
        merged["failed_checks"] += [
            {"id": c["check_id"], "name": c.get("check_name"), "file": c.get("file_path"),
             "resource": c.get("resource")}
            for c in report.get("results", {}).get("failed_checks", [])
        ]
    if merged["parsing_errors"]:
        return None, f"{label}: {merged['parsing_errors']} files checkov could not parse", files
    if merged["passed"] + merged["failed"] == 0:
        return None, f"{label}: no check applied to anything (nothing scanned)", files
    return merged, None, files


def scan(source_dir: Path, out_dir: Path) -> ScanResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (source_dir / CHECKOV_SCRIPT).exists():
        return ScanResult.failed(TOOL, f"{CHECKOV_SCRIPT} is missing")
    checks, skips = curated_checks(source_dir)
    if not checks:
        return ScanResult.failed(TOOL, f"no curated check list in {CURATED_DIR}/")
    try:
        manifests = render_manifests(source_dir, out_dir)
    except Exception as exc:  # reported as the reason this scan failed
        return ScanResult.failed(TOOL, f"cannot render the Kubernetes manifests: {type(exc).__name__}: {exc}")
    if not manifests:
        return ScanResult.failed(TOOL, "the Pulumi program rendered no manifests")
    results: dict[str, Any] = {}
    errors: list[str] = []
    files: list[Path] = []
    targets = [("kubernetes", ["-d", str(out_dir / "manifests")], "kubernetes")]
    dockerfile = source_dir / "app" / "Dockerfile"
    if dockerfile.exists():
        targets.append(("dockerfile", ["-f", str(dockerfile)], "dockerfile"))
    else:
        errors.append("app/Dockerfile is missing")
    for label, args, framework in targets:
        merged, error, produced = _run(source_dir, out_dir, label, args, framework, checks, skips)
        files += produced
        if error:
            errors.append(error)
        elif merged is not None:
            results[label] = merged
    artifacts = artifacts_of(*[(p, "sarif" if p.suffix == ".sarif" else p.suffix.lstrip(".")) for p in files
                               if p.is_file()])
    if errors:
        return ScanResult.failed(TOOL, "; ".join(errors), artifacts, {"results": results})
    failed = sum(r["failed"] for r in results.values())
    passed = sum(r["passed"] for r in results.values())
    summary = (f"{len(manifests)} manifests + Dockerfile: {passed} passed, {failed} failed "
               f"({len(checks)} curated checks, {len(skips)} reviewed skips)")
    return ScanResult(tool=TOOL, findings=failed, summary=summary, artifacts=artifacts,
                      details={"results": results, "skips": skips, "manifests": [str(m) for m in manifests]})
