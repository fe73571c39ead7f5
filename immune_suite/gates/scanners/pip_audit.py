"""pip-audit on the locked dependencies (`requirements.lock`), with reviewed, expiring ignores.

The vulnerability source is the live one (PyPI's JSON API) when it answers; otherwise a local OSV
endpoint serving the PyPA advisory database snapshot (see `immune_suite.gates.advisories`). The result
says which source and which snapshot date it used. A dependency pip-audit skipped was not audited,
so it fails the scan like a vulnerability would.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from immune_suite.gates.advisories import AdvisoryDatabaseMissing, locate_advisory_db, serve_osv
from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail

TOOL = "pip-audit"
LOCK_FILE = "requirements.lock"
IGNORES_FILE = Path("security") / "pip-audit-ignores.yaml"
SOURCE_ENV = "IMMUNE_PIP_AUDIT_SOURCE"  # live | snapshot | auto (default)
SUITE_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ReviewedIgnore:
    id: str
    package: str
    reason: str
    expires: date

    def expired(self, today: date) -> bool:
        return today > self.expires


def load_ignores(path: Path) -> list[ReviewedIgnore]:
    """Each ignore needs an id, the package, a reason and an expiry date; anything less is an error."""
    if not path.exists():
        return []
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    ignores: list[ReviewedIgnore] = []
    for entry in document.get("ignores") or []:
        missing = {"id", "package", "reason", "expires"} - set(entry)
        if missing:
            raise ValueError(f"{path}: ignore {entry.get('id', '?')} lacks {sorted(missing)}")
        expires = entry["expires"]
        if not isinstance(expires, date):
            expires = date.fromisoformat(str(expires))
        if not str(entry["reason"]).strip():
            raise ValueError(f"{path}: ignore {entry['id']} has an empty reason")
        ignores.append(ReviewedIgnore(str(entry["id"]), str(entry["package"]), str(entry["reason"]), expires))
    return ignores


# A release with a well-known advisory: the live source counts as working only if it reports it.
_LIVE_PROBE_URL = "https://pypi.org/pypi/requests/2.19.0/json"
_LIVE_PROBE_ID = "PYSEC-2018-28"


def live_source_works(timeout_s: float = 3.0) -> bool:
    """True when PyPI's per-release JSON API answers with advisories (mirrors often serve only /simple)."""
    try:
        with urllib.request.urlopen(_LIVE_PROBE_URL, timeout=timeout_s) as response:  # nosec B310 - fixed https
            document = json.load(response)
    except (OSError, ValueError):
        return False
    return any(v.get("id") == _LIVE_PROBE_ID for v in document.get("vulnerabilities", []))


def scan(source_dir: Path, out_dir: Path, today: date | None = None,
         lock_file: Path | None = None) -> ScanResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    today = today or date.today()
    lock = lock_file or source_dir / LOCK_FILE
    if not lock.exists():
        return ScanResult.failed(TOOL, f"no lock file {lock} (make it: bash security/lock-requirements.sh)")
    try:
        ignores = load_ignores(source_dir / IGNORES_FILE)
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        return ScanResult.failed(TOOL, f"invalid ignores file: {exc}")
    report, log = out_dir / "pip-audit.json", out_dir / "pip-audit.log"
    mode = os.environ.get(SOURCE_ENV, "auto")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, "-m", "pip_audit", "-r", str(lock), "--no-deps", "--disable-pip",
                   "--progress-spinner", "off", "-f", "json", "-o", str(report), "--cache-dir", cache]
        if mode == "live" or (mode == "auto" and live_source_works()):
            source: dict[str, Any] = {"service": "pypi (live)"}
        else:
            try:
                snapshot = locate_advisory_db(source_dir, SUITE_ROOT)
            except AdvisoryDatabaseMissing as exc:
                return ScanResult.failed(TOOL, str(exc))
            url = stack.enter_context(serve_osv(snapshot))
            command += ["-s", "osv", "--osv-url", url]
            source = {"service": "osv (local snapshot)", "snapshot": snapshot.describe(),
                      "snapshot_commit": snapshot.commit, "snapshot_date": snapshot.date}
        completed = run_tool(command, log, cwd=source_dir)
    artifacts = artifacts_of((report, "json"), (log, "log"))
    if completed.returncode not in (0, 1) or not report.exists():
        return ScanResult.failed(TOOL, f"exit {completed.returncode}: {tail(completed.stderr)}", artifacts,
                                 {"source": source})
    return judge(json.loads(report.read_text(encoding="utf-8")), ignores, today, source, artifacts)


def judge(report: dict[str, Any], ignores: list[ReviewedIgnore], today: date, source: dict[str, Any],
          artifacts: list[Any]) -> ScanResult:
    by_id = {ignore.id: ignore for ignore in ignores}
    open_vulns: list[dict[str, Any]] = []
    ignored: list[dict[str, Any]] = []
    expired: list[dict[str, Any]] = []
    skipped = [d for d in report.get("dependencies", []) if d.get("skip_reason")]
    for dependency in report.get("dependencies", []):
        for vuln in dependency.get("vulns", []):
            row = {"package": dependency["name"], "version": dependency["version"], "id": vuln["id"],
                   "aliases": vuln.get("aliases", []), "fix_versions": vuln.get("fix_versions", [])}
            ignore = next((by_id[i] for i in [vuln["id"], *vuln.get("aliases", [])] if i in by_id), None)
            if ignore is None:
                open_vulns.append(row)
            elif ignore.expired(today):
                expired.append({**row, "reason": ignore.reason, "expired_on": ignore.expires.isoformat()})
            else:
                ignored.append({**row, "reason": ignore.reason, "expires": ignore.expires.isoformat()})
    audited = len(report.get("dependencies", [])) - len(skipped)
    findings = len(open_vulns) + len(expired) + len(skipped)
    parts = [f"{audited} locked packages audited via {source['service']}",
             f"{len(open_vulns)} known vulnerabilities"]
    if expired:
        parts.append(f"{len(expired)} ignores expired")
    if ignored:
        parts.append(f"{len(ignored)} reviewed ignores")
    if skipped:
        parts.append(f"{len(skipped)} packages not audited")
    return ScanResult(tool=TOOL, findings=findings, summary=", ".join(parts), artifacts=artifacts,
                      details={"source": source, "vulnerabilities": open_vulns, "expired_ignores": expired,
                               "ignored": ignored, "skipped": skipped, "audited": audited})
