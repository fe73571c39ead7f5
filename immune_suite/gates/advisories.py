"""An OSV `/v1/query` endpoint served from a local snapshot of the PyPA advisory database.

The snapshot is the one the repository carries (`security/advisories/pypa-advisory-db.json.xz`, see
`immune_suite.gates.advisory_snapshot`), or the file/checkout named by IMMUNE_ADVISORY_DB; it must be
at most 90 days old (configurable) unless an old one is accepted explicitly (`judge_age`).

Our machines reach package registries only, and pip-audit with no reachable vulnerability service
reports every package as "could not be audited" yet says "No known vulnerabilities found". Pointing it
at this endpoint (`pip-audit -s osv --osv-url http://127.0.0.1:PORT/v1/query`) gives it real answers
offline. Matching follows the OSV schema: a version is affected when it is listed in `versions` or
falls in an ECOSYSTEM range (`introduced` <= v < `fixed`, or <= `last_affected`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from immune_suite.gates.advisory_snapshot import (
    SNAPSHOT_FILE,
    SnapshotError,
    SnapshotInfo,
    checkout_origin,
    read_advisory_file,
)
from immune_suite.gates.advisory_snapshot import read as read_snapshot

ADVISORY_DB_ENV = "IMMUNE_ADVISORY_DB"  # a snapshot file or an advisory-database checkout; overrides
MAX_AGE_ENV = "IMMUNE_ADVISORY_MAX_AGE_DAYS"
ACCEPT_STALE_ENV = "IMMUNE_ADVISORY_ACCEPT_STALE"  # a reason: accept a snapshot older than the limit
POLICY_FILE = Path("security") / "advisories" / "policy.yaml"
DEFAULT_MAX_AGE_DAYS = 90


class AdvisoryDatabaseMissing(RuntimeError):
    """No advisory snapshot where one was looked for: the audit cannot run (a failure, never a pass)."""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot to serve: the vendored file (`kind` "file") or a checkout's `vulns/` ("checkout")."""

    path: Path
    commit: str
    date: date
    kind: str = "file"

    def describe(self) -> str:
        """One line for the gate's report: commit, date and path."""
        return f"PyPA advisory database snapshot {self.commit[:12]} ({self.date.isoformat()}) at {self.path}"


def locate_advisory_db(*roots: Path) -> Snapshot:
    """The snapshot named by IMMUNE_ADVISORY_DB, else the one vendored at `<root>/security/advisories/`.

    Roots are tried in order (the candidate's tree, then the suite's own). Raises AdvisoryDatabaseMissing
    when none is there or the one found cannot be read, and when IMMUNE_ADVISORY_DB names neither a
    snapshot file nor an advisory-database checkout: a database asked for by name is never silently
    replaced by an older vendored one.
    """
    candidates: list[Path] = []
    if os.environ.get(ADVISORY_DB_ENV):
        named = Path(os.environ[ADVISORY_DB_ENV])
        if not named.is_file() and not (named / "vulns").is_dir():
            raise AdvisoryDatabaseMissing(
                f"{ADVISORY_DB_ENV}={named} is neither a snapshot file nor an advisory-database checkout"
            )
        candidates.append(named)
    candidates += [root.resolve() / SNAPSHOT_FILE for root in roots]
    try:
        for path in candidates:
            if path.is_file():
                info, _ = _read_file(path)
                return Snapshot(path=path, commit=info.commit, date=info.date, kind="file")
            if (path / "vulns").is_dir():
                commit, day = checkout_origin(path)
                return Snapshot(path=path, commit=commit, date=day, kind="checkout")
    except SnapshotError as exc:
        raise AdvisoryDatabaseMissing(str(exc)) from exc
    looked = ", ".join(str(p) for p in candidates)
    raise AdvisoryDatabaseMissing(
        f"no PyPA advisory database snapshot found (looked in: {looked}); "
        f"set {ADVISORY_DB_ENV} or run bash security/refresh-advisories.sh"
    )


@lru_cache(maxsize=4)
def _read_file(path: Path) -> tuple[SnapshotInfo, dict[str, list[dict[str, Any]]]]:
    return read_snapshot(path)


@dataclass(frozen=True)
class AgeJudgement:
    """Whether a snapshot is recent enough: its age against the limit, or an explicit acceptance."""

    snapshot_date: date
    age_days: int
    max_age_days: int
    accepted: dict[str, str] | None = None  # who accepted an old snapshot, why, until when
    error: str | None = None  # why an old snapshot is not accepted

    @property
    def passed(self) -> bool:
        """Recent enough, or older but explicitly accepted."""
        return self.error is None

    @property
    def stale(self) -> bool:
        """Older than the limit (`age_days` > `max_age_days`), accepted or not."""
        return self.age_days > self.max_age_days

    def describe(self) -> str:
        """One line for the gate's report: the snapshot's date, its age in days, the limit, any acceptance."""
        text = (
            f"advisory snapshot of {self.snapshot_date.isoformat()}, {self.age_days} days old "
            f"(limit {self.max_age_days})"
        )
        if self.accepted:
            text += f"; older than the limit, ACCEPTED by {self.accepted['by']}: {self.accepted['reason']}"
            if self.accepted.get("expires"):
                text += f" (until {self.accepted['expires']})"
        return text + (f"; {self.error}" if self.error else "")


def judge_age(snapshot: Snapshot, today: date, policy_root: Path) -> AgeJudgement:
    """Apply the age rule: at most `max_age_days` old (policy file, IMMUNE_ADVISORY_MAX_AGE_DAYS, else 90).

    An older snapshot passes only when accepted explicitly: IMMUNE_ADVISORY_ACCEPT_STALE=<reason> (the
    gate CLI's --accept-stale-advisories), or an `accept_stale` entry in security/advisories/policy.yaml
    naming this snapshot's commit, a reason and an expiry date. Raises ValueError on a malformed policy.
    """
    policy_path = policy_root / POLICY_FILE
    policy = (yaml.safe_load(policy_path.read_text(encoding="utf-8")) or {}) if policy_path.exists() else {}
    if not isinstance(policy, dict):
        raise ValueError(f"{policy_path}: expected a mapping")
    max_age = int(os.environ.get(MAX_AGE_ENV) or policy.get("max_age_days", DEFAULT_MAX_AGE_DAYS))
    age = (today - snapshot.date).days

    def judged(accepted: dict[str, str] | None = None, error: str | None = None) -> AgeJudgement:
        return AgeJudgement(snapshot.date, age, max_age, accepted, error)

    if age <= max_age:
        return judged()
    if os.environ.get(ACCEPT_STALE_ENV, "").strip():
        return judged(accepted={"by": ACCEPT_STALE_ENV, "reason": os.environ[ACCEPT_STALE_ENV]})
    entry = policy.get("accept_stale")
    if not entry:
        return judged(
            error=f"older than {max_age} days: refresh it (bash security/refresh-"
            f"advisories.sh) or accept it explicitly ({ACCEPT_STALE_ENV})"
        )
    missing = {"commit", "reason", "expires"} - set(entry)
    if missing or not str(entry.get("reason", "")).strip():
        raise ValueError(
            f"{policy_path}: accept_stale needs commit, a non-empty reason and expires "
            f"(missing: {sorted(missing) or ['reason']})"
        )
    expires = entry["expires"]
    if not isinstance(expires, date):
        expires = date.fromisoformat(str(expires))
    if not snapshot.commit.startswith(str(entry["commit"])):
        return judged(
            error=f"older than {max_age} days; the acceptance in {POLICY_FILE} is "
            f"for snapshot {entry['commit']}, not {snapshot.commit[:12]}"
        )
    if today > expires:
        return judged(
            error=f"older than {max_age} days; its acceptance in {POLICY_FILE} "
            f"expired on {expires.isoformat()}"
        )
    return judged(
        accepted={
            "by": str(POLICY_FILE),
            "reason": str(entry["reason"]).strip(),
            "expires": expires.isoformat(),
        }
    )


class AdvisoryIndex:
    """Advisories per canonical package name, from the snapshot file or read lazily from a checkout."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._lock = threading.Lock()
        self._loaded: dict[str, list[dict[str, Any]]] = {}
        self._dirs: dict[str, Path] = {}
        if snapshot.kind == "file":
            self._loaded = _read_file(snapshot.path)[1]
        else:
            vulns = snapshot.path / "vulns"
            self._dirs = {canonicalize_name(d.name): d for d in vulns.iterdir() if d.is_dir()}

    @property
    def package_count(self) -> int:
        """How many packages the snapshot has advisories for."""
        return len(self._loaded) or len(self._dirs)

    def advisories(self, name: str) -> list[dict[str, Any]]:
        """Every advisory (OSV JSON object) filed under the package `name` (any spelling PEP 503 folds
        together), whichever versions it affects; [] for an unknown package."""
        wanted = canonicalize_name(name)
        if self.snapshot.kind == "file":
            return self._loaded.get(wanted, [])
        directory = self._dirs.get(wanted)
        if directory is None:
            return []
        with self._lock:
            return _load_dir(directory)

    def query(self, name: str, version: str) -> list[dict[str, Any]]:
        """The advisories (OSV JSON objects) that affect `name==version`."""
        return [a for a in self.advisories(name) if affects(a, name, version)]


@lru_cache(maxsize=4096)
def _load_dir(directory: Path) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        advisory = read_advisory_file(path)
        if isinstance(advisory, dict):
            loaded.append(advisory)
    return loaded


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """OSV ECOSYSTEM range semantics, events taken in version order."""
    ordered: list[tuple[Version, int, str]] = []
    for event in events:
        for kind, text in event.items():
            if kind == "introduced":
                bound = Version("0") if text == "0" else _version(text)
            else:
                bound = _version(text)
            if bound is not None:
                # At equal versions `fixed` closes before `introduced` opens; last_affected is inclusive.
                ordered.append((bound, {"fixed": 0, "introduced": 1, "last_affected": 2}.get(kind, 3), kind))
    ordered.sort()
    affected = False
    for bound, _, kind in ordered:
        if kind == "introduced" and version >= bound:
            affected = True
        elif kind == "fixed" and version >= bound:
            affected = False
        elif kind == "last_affected" and version > bound:
            affected = False
    return affected


def affects(advisory: dict[str, Any], name: str, version_text: str) -> bool:
    """Whether the OSV `advisory` affects PyPI `name==version_text` (OSV schema,
    https://ossf.github.io/osv-schema/: listed in `versions`, or inside an ECOSYSTEM range of
    `introduced`/`fixed`/`last_affected` events compared as PEP 440 versions). A withdrawn advisory affects
    nothing; an unparsable version can match only by its exact listing."""
    if advisory.get("withdrawn"):
        return False
    version = _version(version_text)
    wanted = canonicalize_name(name)
    for affected in advisory.get("affected", []):
        package = affected.get("package", {})
        if package.get("ecosystem") != "PyPI" or canonicalize_name(package.get("name", "")) != wanted:
            continue
        if version_text in {str(v) for v in affected.get("versions", [])}:
            return True
        if version is None:
            continue
        for spec in affected.get("ranges", []):
            if spec.get("type") == "ECOSYSTEM" and _in_range(version, spec.get("events", [])):
                return True
    return False


class _QueryHandler(BaseHTTPRequestHandler):
    index: AdvisoryIndex

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/query":
            self.send_error(404)
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            package = body["package"]
            if package.get("ecosystem", "PyPI") != "PyPI":
                raise ValueError("only the PyPI ecosystem is in this snapshot")
            vulns = self.index.query(package["name"], str(body["version"]))
        except (KeyError, ValueError, TypeError) as exc:
            self.send_error(400, str(exc))
            return
        payload = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return  # pip-audit's requests are not worth a log line each


@contextmanager
def serve_osv(snapshot: Snapshot) -> Iterator[str]:
    """Serve the snapshot on a free loopback port for the duration of the block; yields the query URL."""
    handler = type("SnapshotQueryHandler", (_QueryHandler,), {"index": AdvisoryIndex(snapshot)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="osv-snapshot", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()
