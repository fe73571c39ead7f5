"""The security gate: static scans of the candidate's tree, then fuzzing of its running API.

bandit (code), pip-audit (locked dependencies), detect-secrets (committed secrets), checkov (rendered
Kubernetes manifests and the Dockerfile) and, when the candidate is reachable, schemathesis (its
OpenAPI). Each tool leaves a SARIF or JSON artifact; the verdict has one measurement per tool (findings
against an allowance of zero). A tool that could not run fails the gate with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from immune_suite.gates.scanners import ScanResult, bandit, checkov, pip_audit, schemathesis, secrets
from immune_suite.verdict import Status, Verdict

GATE = "security"


def _guarded(tool: str, scan: Callable[[], ScanResult]) -> ScanResult:
    try:
        return scan()
    except Exception as exc:  # any crash is this tool's failure, reported, never a pass
        return ScanResult.failed(tool, f"{type(exc).__name__}: {exc}")


def run_security_gate(
    source_dir: Path, out_dir: Path, base_url: str | None, token: str | None, progress: Callable[..., None]
) -> Verdict:
    """Scan `source_dir` (the candidate's tree) and, when `base_url` is given, fuzz its API."""
    started = datetime.now(UTC).isoformat()
    out_dir = out_dir.resolve()  # tools run from other directories (checkov from the manifests' own)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_dir = source_dir.resolve()
    scans: list[tuple[str, Callable[[], ScanResult]]] = [
        (bandit.TOOL, lambda: bandit.scan(source_dir, out_dir)),
        (pip_audit.TOOL, lambda: pip_audit.scan(source_dir, out_dir)),
        (secrets.TOOL, lambda: secrets.scan(source_dir, out_dir)),
        (checkov.TOOL, lambda: checkov.scan(source_dir, out_dir)),
    ]
    if base_url:
        scans.append((schemathesis.TOOL, lambda: schemathesis.scan(base_url, token, out_dir)))
    results: list[ScanResult] = []
    timings: dict[str, float] = {}
    for tool, scan in scans:
        progress(f"running {tool}", stage=GATE)
        began = time.monotonic()
        result = _guarded(tool, scan)
        timings[tool] = round(time.monotonic() - began, 2)
        progress(f"{tool}: {'ok' if result.passed else 'FAIL'} - {result.summary}", stage=GATE)
        for warning in result.warnings:
            progress(f"{tool}: WARNING - {warning}", stage=GATE)
        results.append(result)
    measurements = [r.measurement() for r in results]
    status = Verdict.status_from(measurements)
    failed = [r for r in results if not r.passed]
    summary = ("all clean: " if not failed else "failed: ") + "; ".join(
        f"{r.tool}: {r.summary}" for r in (failed or results)
    )
    if not base_url:
        # In a promotion the api-fuzz stage fuzzes the deployed candidate; this gate runs before it.
        summary += " (API not fuzzed here: no candidate URL)"
    warnings = [f"{r.tool}: {w}" for r in results for w in r.warnings]
    if warnings:
        summary += "; WARNING: " + "; ".join(warnings)
        if status is Status.PASS:
            status = Status.WARN
    return Verdict(
        gate=GATE,
        status=status if not failed else Status.FAIL,
        summary=summary,
        measurements=measurements,
        artifacts=[a for r in results for a in r.artifacts],
        started_at=started,
        details={
            "tools": {r.tool: r.record(seconds=timings[r.tool]) for r in results},
            "source_dir": str(source_dir),
            "fuzzed_url": base_url,
        },
    )


FUZZ_GATE = "api-fuzz"


def run_api_fuzz(base_url: str, token: str | None, out_dir: Path, progress: Callable[..., None]) -> Verdict:
    """The security gate's API half: schemathesis against the candidate's running API (the pipeline's
    `api-fuzz` step, on the preview endpoint, which serves no user traffic).

    The static scans ran on the source before deploying; fuzzing needs the candidate running. One
    measurement (schemathesis findings <= 0); a fuzzer that crashed or tested nothing fails; a warning
    (e.g. operations refused by authentication) makes the verdict WARN.
    """
    started = datetime.now(UTC).isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"api fuzz: schemathesis against {base_url}", stage=FUZZ_GATE)
    result = _guarded(schemathesis.TOOL, lambda: schemathesis.scan(base_url, token, out_dir))
    progress(f"{result.tool}: {'ok' if result.passed else 'FAIL'} - {result.summary}", stage=FUZZ_GATE)
    for warning in result.warnings:
        progress(f"{result.tool}: WARNING - {warning}", stage=FUZZ_GATE)
    status = Status.FAIL if not result.passed else Status.WARN if result.warnings else Status.PASS
    summary = f"{result.tool}: {result.summary}" + "".join(f"; WARNING: {w}" for w in result.warnings)
    return Verdict(
        gate=FUZZ_GATE,
        status=status,
        summary=summary,
        measurements=[result.measurement()],
        artifacts=list(result.artifacts),
        started_at=started,
        details={
            "tools": {result.tool: result.record()},
            "fuzzed_url": base_url,
        },
    )
