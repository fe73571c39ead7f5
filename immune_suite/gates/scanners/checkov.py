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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail

TOOL = "checkov"
CHECKOV_SCRIPT = Path("scripts") / "checkov.sh"
CURATED_DIR = Path("security") / "checkov"


@dataclass(frozen=True)
class CuratedChecks:
    """For one checkov framework: the checks that must run and pass, and the reviewed skips."""

    required: dict[str, str]  # check id -> what it guards
    skips: dict[str, str]  # check id -> why it does not apply


def curated_checks(source_dir: Path) -> dict[str, CuratedChecks]:
    """The curated list (security/checkov/*.yaml, kept with the infra): framework -> checks and skips.

    Every check in checkov's catalogue runs except the reviewed skips; the named checks must also have
    run and passed, so a renamed or vanished check cannot pass silently.
    """
    curated: dict[str, CuratedChecks] = {}
    for path in sorted((source_dir / CURATED_DIR).glob("*.y*ml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for framework in ("kubernetes", "dockerfile"):
            section = document.get(framework) or {}
            if section:
                curated[framework] = CuratedChecks(
                    required={str(k): str(v) for k, v in (section.get("checks") or {}).items()},
                    skips={str(k): str(v) for k, v in (section.get("skips") or {}).items()},
                )
    return curated


RENDER_STACKS = ("staging", "prod")
_RENDER_SCRIPT = """
import sys
from pathlib import Path
# Only the candidate's infra/ may answer: drop the editable-install finder of whatever checkout the
# suite itself was installed from, or a module missing from the candidate would come from there.
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
from immune_infra.render import render_stack, write_manifests
for stack in sys.argv[2:]:
    write_manifests(render_stack(stack), Path(sys.argv[1]) / stack)
"""


def render_manifests(source_dir: Path, out_dir: Path, stacks: tuple[str, ...] = RENDER_STACKS) -> list[Path]:
    """The candidate's Pulumi program rendered under mocks (no cluster, no engine), one folder per stack.

    It runs in a subprocess: the candidate's own `infra/` comes first on the path, and Pulumi's
    process-global mock state never touches the caller. Returns the YAML files written under
    `out_dir/manifests/<stack>/`. Raises RuntimeError when the render fails or exceeds its 300 s budget.
    """
    target = out_dir / "manifests"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(source_dir / "infra"), os.environ.get("PYTHONPATH")])
        ),
    }
    completed = run_tool(
        [sys.executable, "-c", _RENDER_SCRIPT, str(target), *stacks],
        out_dir / "checkov-render.log",
        cwd=source_dir,
        env=env,
        timeout_s=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"render failed (exit {completed.returncode}): {tail(completed.stderr)}")
    return sorted(target.rglob("*.y*ml"))


# Kinds whose pod template checkov also scans as a resource of its own ("Pod" in its report).
_POD_TEMPLATE_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
}


def expected_resources(manifests: list[Path]) -> dict[str, int]:
    """What checkov must have scanned: every rendered Kubernetes object, plus one resource per pod template
    (checkov scans a workload's pod template as a resource of its own). Raises yaml.YAMLError when a
    rendered file is not YAML."""
    objects = templates = 0
    for path in manifests:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(document, dict) or "kind" not in document:
                continue
            objects += 1
            templates += document["kind"] in _POD_TEMPLATE_KINDS
    return {"objects": objects, "pod_templates": templates, "resources": objects + templates}


def _run(
    source_dir: Path,
    out_dir: Path,
    label: str,
    target_args: list[str],
    framework: str,
    curated: CuratedChecks,
    cwd: Path,
) -> tuple[dict[str, Any] | None, str | None, list[Path]]:
    report_dir = out_dir / f"checkov-{label}"
    report_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"checkov-{label}.log"
    command = [
        "bash",
        str(source_dir / CHECKOV_SCRIPT),
        *target_args,
        "--framework",
        framework,
        "-o",
        "json",
        "-o",
        "sarif",
        "--output-file-path",
        str(report_dir),
        "--compact",
    ]
    if curated.skips:
        command += ["--skip-check", ",".join(curated.skips)]
    completed = run_tool(command, log, cwd=cwd, timeout_s=900)
    files = [log, *sorted(report_dir.iterdir())]
    report_path = report_dir / "results_json.json"
    if completed.returncode not in (0, 1) or not report_path.exists():
        output = tail(completed.stdout + completed.stderr)
        return None, f"{label}: exit {completed.returncode}: {output}", files
    data = json.loads(report_path.read_text(encoding="utf-8"))
    reports = data if isinstance(data, list) else [data]
    merged: dict[str, Any] = {
        "passed": 0,
        "failed": 0,
        "parsing_errors": 0,
        "resources": 0,
        "failed_checks": [],
        "passed_ids": set(),
    }
    for report in reports:
        summary = report.get("summary", {})
        merged["passed"] += summary.get("passed", 0)
        merged["failed"] += summary.get("failed", 0)
        merged["parsing_errors"] += summary.get("parsing_errors", 0)
        merged["resources"] += summary.get("resource_count", 0)
        merged["passed_ids"] |= {c["check_id"] for c in report.get("results", {}).get("passed_checks", [])}
        merged["failed_checks"] += [
            {
                "id": c["check_id"],
                "name": c.get("check_name"),
                "file": c.get("file_path"),
                "resource": c.get("resource"),
            }
            for c in report.get("results", {}).get("failed_checks", [])
        ]
    if merged["parsing_errors"]:
        return None, f"{label}: {merged['parsing_errors']} files checkov could not parse", files
    if merged["passed"] + merged["failed"] == 0:
        return None, f"{label}: no check applied to anything (nothing scanned)", files
    merged["required_not_passed"] = sorted(set(curated.required) - merged.pop("passed_ids"))
    return merged, None, files


def scan(source_dir: Path, out_dir: Path) -> ScanResult:
    """checkov's curated checks over the candidate's rendered manifests and `app/Dockerfile`; findings
    are failed checks, and every rendered resource must have been scanned. A missing script, check list or
    Dockerfile, a failed render or a checkov error gives a failed result, never a raise."""
    # checkov runs from inside the manifests' directory: a relative report path would land there.
    source_dir, out_dir = source_dir.resolve(), out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (source_dir / CHECKOV_SCRIPT).exists():
        return ScanResult.failed(TOOL, f"{CHECKOV_SCRIPT} is missing")
    curated = curated_checks(source_dir)
    if set(curated) != {"kubernetes", "dockerfile"}:
        return ScanResult.failed(TOOL, f"no curated kubernetes + dockerfile check lists in {CURATED_DIR}/")
    dockerfile = source_dir / "app" / "Dockerfile"
    if not dockerfile.exists():
        return ScanResult.failed(TOOL, "app/Dockerfile is missing")
    try:
        manifests = render_manifests(source_dir, out_dir)
    except Exception as exc:  # reported as the reason this scan failed
        return ScanResult.failed(TOOL, f"cannot render the Kubernetes manifests: {type(exc).__name__}: {exc}")
    if not manifests:
        return ScanResult.failed(TOOL, "the Pulumi program rendered no manifests")
    expected = expected_resources(manifests)
    results: dict[str, Any] = {}
    errors: list[str] = []
    files: list[Path] = []
    # checkov drops every file whose absolute path has a hidden directory in it (the default state dir
    # is under ~/.local), so the manifests are scanned as "." from inside their directory.
    targets = [
        ("kubernetes", ["-d", "."], out_dir / "manifests"),
        ("dockerfile", ["-f", str(dockerfile)], source_dir),
    ]
    for framework, args, cwd in targets:
        merged, error, produced = _run(
            source_dir, out_dir, framework, args, framework, curated[framework], cwd
        )
        files += produced
        if error:
            errors.append(error)
        elif merged is not None:
            results[framework] = merged
    artifacts = artifacts_of(
        *[(p, "sarif" if p.suffix == ".sarif" else p.suffix.lstrip(".")) for p in files if p.is_file()]
    )
    scanned = results.get("kubernetes", {}).get("resources", 0)
    if not errors and scanned < expected["resources"]:
        # A manifest checkov silently skipped (e.g. under a hidden directory) was not checked at all.
        errors.append(
            f"kubernetes: checkov scanned {scanned} resources, fewer than the "
            f"{expected['resources']} rendered ({expected['objects']} objects in "
            f"{len(manifests)} manifests + {expected['pod_templates']} pod templates)"
        )
    if errors:
        return ScanResult.failed(
            TOOL,
            "; ".join(errors),
            artifacts,
            {"results": results, "expected": expected, "manifests": len(manifests)},
        )
    failed = sum(r["failed"] for r in results.values())
    passed = sum(r["passed"] for r in results.values())
    missing = [c for r in results.values() for c in r["required_not_passed"]]
    skips = {f: c.skips for f, c in curated.items()}
    skipped = sum(len(v) for v in skips.values())
    summary = (
        f"{len(manifests)} manifests ({scanned} resources scanned, {expected['resources']} expected)"
        f" + Dockerfile: {passed} passed, {failed} failed, "
        f"{len(missing)} required checks not passed, {skipped} reviewed skips"
    )
    return ScanResult(
        tool=TOOL,
        findings=failed + len(missing),
        summary=summary,
        artifacts=artifacts,
        details={
            "results": results,
            "skips": skips,
            "required_not_passed": missing,
            "manifests": len(manifests),
            "expected": expected,
        },
    )
