"""pip-audit on the locked dependencies, with reviewed, expiring ignores.

`requirements.lock` is what ships: the image and every deployment install exactly it (`pip install
--require-hashes -r requirements.lock`, then the package with `--no-deps`), so every entry must be
pinned with hashes. `requirements-dev.lock`, when present, is the suite's own tool set; it is audited
too. Every lock entry must come back audited: an entry pip-audit dropped (e.g. an environment marker
that does not hold here) or skipped fails the scan, named, like a vulnerability would.

The vulnerability source is the live one (PyPI's JSON API) when it answers; otherwise a local OSV
endpoint serving the PyPA advisory snapshot the repository carries (see `immune_suite.gates.advisories`),
which must pass the age rule there. The result says which source and which snapshot date it used.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from immune_suite.gates.advisories import AdvisoryDatabaseMissing, judge_age, locate_advisory_db, serve_osv
from immune_suite.gates.scanners import ScanResult, artifacts_of, run_tool, tail
from immune_suite.paths import REPO_ROOT

TOOL = "pip-audit"
LOCK_FILE = "requirements.lock"  # what ships: hashed, installed by the image and every deployment
DEV_LOCK_FILE = "requirements-dev.lock"  # the suite's tools (pip freeze of the dev venv)
IGNORES_FILE = Path("security") / "pip-audit-ignores.yaml"
SOURCE_ENV = "IMMUNE_PIP_AUDIT_SOURCE"  # live | snapshot | auto (default)
SUITE_ROOT = REPO_ROOT  # the suite's own checkout (its vendored advisory snapshot)


@dataclass(frozen=True)
class ReviewedIgnore:
    """A reviewed advisory ignore from security/pip-audit-ignores.yaml: which advisory, in which package,
    why, and the day after which it no longer applies."""

    id: str
    package: str
    reason: str
    expires: date

    def expired(self, today: date) -> bool:
        """Past its expiry day (the ignore then stops applying and the finding counts again)."""
        return today > self.expires


def load_ignores(path: Path) -> list[ReviewedIgnore]:
    """Each ignore needs an id, the package, a reason and an expiry date; anything less is an error.

    [] when the file does not exist. Raises ValueError for an entry lacking a field, with an empty reason,
    or with an expiry that is not an ISO date (YYYY-MM-DD); yaml.YAMLError for a file that is not YAML.
    """
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
    """True when PyPI's per-release JSON API answers with advisories within `timeout_s` seconds (mirrors
    often serve only /simple); any network or parse error is False."""
    try:
        with urllib.request.urlopen(_LIVE_PROBE_URL, timeout=timeout_s) as response:  # nosec B310 - fixed https
            document = json.load(response)
    except (OSError, ValueError):
        return False
    return any(v.get("id") == _LIVE_PROBE_ID for v in document.get("vulnerabilities", []))


@dataclass(frozen=True)
class LockFile:
    """One lock: its path, what it is for, and its entries (canonical name -> pinned version)."""

    path: Path
    role: str
    entries: dict[str, str]
    unhashed: list[str]


def read_lock(path: Path, role: str) -> LockFile:
    """Parse a pip requirements lock: each entry `name==version` (extras/markers allowed), `--hash` options.

    Raises ValueError naming an entry that is not pinned exactly, is a URL, or appears twice.
    """
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    entries: dict[str, str] = {}
    unhashed: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ValueError(f"{path.name}:{number}: option lines are not allowed in a lock: {line[:60]}")
        spec, *options = line.split(" --")
        try:
            requirement = Requirement(spec)
        except InvalidRequirement as exc:
            raise ValueError(f"{path.name}:{number}: {exc}") from exc
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        if requirement.url or len(pins) != 1 or len(requirement.specifier) != 1:
            raise ValueError(f"{path.name}:{number}: {spec.strip()} is not pinned to one exact version")
        name = canonicalize_name(requirement.name)
        if name in entries:
            raise ValueError(f"{path.name}:{number}: {name} appears twice")
        entries[name] = pins[0]
        if not any(o.strip().startswith("hash=") for o in options):
            unhashed.append(name)
    return LockFile(path=path, role=role, entries=entries, unhashed=unhashed)


def scan(
    source_dir: Path, out_dir: Path, today: date | None = None, lock_file: Path | None = None
) -> ScanResult:
    """pip-audit over `lock_file` (default: the candidate's requirements.lock, plus requirements-dev.lock)
    with the reviewed ignores valid on `today`. Findings are unignored vulnerabilities plus lock entries
    that came back unaudited. A missing or unhashed lock, a bad ignores file or an unusable advisory
    source gives a failed result, never a raise."""
    out_dir.mkdir(parents=True, exist_ok=True)
    today = today or date.today()
    lock = lock_file or source_dir / LOCK_FILE
    if not lock.exists():
        return ScanResult.failed(TOOL, f"no lock file {lock} (make it: bash security/lock-requirements.sh)")
    try:
        ignores = load_ignores(source_dir / IGNORES_FILE)
        locks = [read_lock(lock, "ships")]
        if lock_file is None and (source_dir / DEV_LOCK_FILE).exists():
            locks.append(read_lock(source_dir / DEV_LOCK_FILE, "suite"))
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        return ScanResult.failed(TOOL, f"invalid lock or ignores file: {exc}")
    if locks[0].unhashed:  # `pip install --require-hashes` of the image would refuse it anyway
        return ScanResult.failed(
            TOOL,
            f"{lock.name} ships entries without --hash: "
            + ", ".join(locks[0].unhashed[:10])
            + " (regenerate: bash security/lock-requirements.sh)",
            details={"unhashed": locks[0].unhashed},
        )
    mode = os.environ.get(SOURCE_ENV, "auto")
    warnings: list[str] = []
    with ExitStack() as stack:
        cache = stack.enter_context(tempfile.TemporaryDirectory())
        service: list[str] = []
        if mode == "live" or (mode == "auto" and live_source_works()):
            source: dict[str, Any] = {"service": "pypi (live)"}
        else:
            try:
                snapshot = locate_advisory_db(source_dir, SUITE_ROOT)
                age = judge_age(snapshot, today, source_dir)
            except (AdvisoryDatabaseMissing, ValueError, yaml.YAMLError) as exc:
                return ScanResult.failed(TOOL, str(exc))
            source = {
                "service": f"osv (local snapshot of {snapshot.date.isoformat()})",
                "snapshot": snapshot.describe(),
                "snapshot_commit": snapshot.commit,
                "snapshot_date": snapshot.date.isoformat(),
                "snapshot_age_days": age.age_days,
                "max_age_days": age.max_age_days,
                "stale_accepted": age.accepted,
            }
            if not age.passed:
                return ScanResult.failed(TOOL, age.describe(), details={"source": source})
            if age.accepted:
                warnings.append(age.describe())
            service = ["-s", "osv", "--osv-url", stack.enter_context(serve_osv(snapshot))]
        reports: list[dict[str, Any]] = []
        artifacts: list[Any] = []
        for index, entry in enumerate(locks):
            stem = "pip-audit" if index == 0 else f"pip-audit-{entry.role}"
            report, log = out_dir / f"{stem}.json", out_dir / f"{stem}.log"
            command = [
                sys.executable,
                "-m",
                "pip_audit",
                "-r",
                str(entry.path),
                "--no-deps",
                "--disable-pip",
                "--progress-spinner",
                "off",
                "-f",
                "json",
                "-o",
                str(report),
                "--cache-dir",
                cache,
                *service,
            ]
            completed = run_tool(command, log, cwd=source_dir)
            artifacts += artifacts_of((report, "json"), (log, "log"))
            if completed.returncode not in (0, 1) or not report.exists():
                return ScanResult.failed(
                    TOOL,
                    f"{entry.path.name}: exit {completed.returncode}: {tail(completed.stderr)}",
                    artifacts,
                    {"source": source},
                )
            reports.append(json.loads(report.read_text(encoding="utf-8")))
    result = judge(_merge(reports), ignores, today, source, artifacts, locks)
    return replace(result, warnings=[*result.warnings, *warnings])


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of every audited dependency, a package in both locks at the same version once."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for report in reports:
        for dependency in report.get("dependencies", []):
            key = (canonicalize_name(dependency["name"]), str(dependency.get("version")))
            seen.setdefault(key, dependency)
    return {"dependencies": list(seen.values())}


def coverage(report: dict[str, Any], locks: list[LockFile]) -> dict[str, Any]:
    """Lock entries against what pip-audit audited: each entry must be in the report, unskipped."""
    audited = {
        (canonicalize_name(d["name"]), str(d.get("version")))
        for d in report.get("dependencies", [])
        if not d.get("skip_reason")
    }
    per_lock: dict[str, Any] = {}
    for lock in locks:
        missing = sorted(f"{n}=={v}" for n, v in lock.entries.items() if (n, v) not in audited)
        per_lock[lock.path.name] = {
            "role": lock.role,
            "entries": len(lock.entries),
            "audited": len(lock.entries) - len(missing),
            "not_audited": missing,
        }
    return per_lock


def judge(
    report: dict[str, Any],
    ignores: list[ReviewedIgnore],
    today: date,
    source: dict[str, Any],
    artifacts: list[Any],
    locks: list[LockFile] | None = None,
) -> ScanResult:
    """Findings: open vulnerabilities, expired ignores, skipped packages and lock entries not audited."""
    by_id = {ignore.id: ignore for ignore in ignores}
    open_vulns: list[dict[str, Any]] = []
    ignored: list[dict[str, Any]] = []
    expired: list[dict[str, Any]] = []
    skipped = [d for d in report.get("dependencies", []) if d.get("skip_reason")]
    for dependency in report.get("dependencies", []):
        for vuln in dependency.get("vulns", []):
            row = {
                "package": dependency["name"],
                "version": dependency["version"],
                "id": vuln["id"],
                "aliases": vuln.get("aliases", []),
                "fix_versions": vuln.get("fix_versions", []),
            }
            ignore = next((by_id[i] for i in [vuln["id"], *vuln.get("aliases", [])] if i in by_id), None)
            if ignore is None:
                open_vulns.append(row)
            elif ignore.expired(today):
                expired.append({**row, "reason": ignore.reason, "expired_on": ignore.expires.isoformat()})
            else:
                ignored.append({**row, "reason": ignore.reason, "expires": ignore.expires.isoformat()})
    audited = len(report.get("dependencies", [])) - len(skipped)
    locks_seen = coverage(report, locks or [])
    not_audited = sorted({n for c in locks_seen.values() for n in c["not_audited"]})
    findings = len(open_vulns) + len(expired) + len(skipped) + len(not_audited)
    counts = ", ".join(f"{name} {c['audited']}/{c['entries']}" for name, c in locks_seen.items())
    parts = [
        f"{audited} locked packages audited via {source['service']}" + (f" ({counts})" if counts else ""),
        f"{len(open_vulns)} known vulnerabilities",
    ]
    if expired:
        parts.append(f"{len(expired)} ignores expired")
    if ignored:
        parts.append(f"{len(ignored)} reviewed ignores")
    if skipped:
        parts.append(f"{len(skipped)} packages skipped: " + ", ".join(d["name"] for d in skipped[:10]))
    if not_audited:
        parts.append(f"{len(not_audited)} lock entries not audited: " + ", ".join(not_audited[:10]))
    return ScanResult(
        tool=TOOL,
        findings=findings,
        summary=", ".join(parts),
        artifacts=artifacts,
        details={
            "source": source,
            "vulnerabilities": open_vulns,
            "expired_ignores": expired,
            "ignored": ignored,
            "skipped": skipped,
            "audited": audited,
            "locks": locks_seen,
            "not_audited": not_audited,
        },
    )
