"""An OSV `/v1/query` endpoint served from a local snapshot of the PyPA advisory database.

Our machines reach package registries only, and pip-audit with no reachable vulnerability service
reports every package as "could not be audited" yet says "No known vulnerabilities found". Pointing it
at this endpoint (`pip-audit -s osv --osv-url http://127.0.0.1:PORT/v1/query`) gives it real answers
offline. Matching follows the OSV schema: a version is affected when it is listed in `versions` or
falls in an ECOSYSTEM range (`introduced` <= v < `fixed`, or <= `last_affected`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ADVISORY_DB_ENV = "IMMUNE_ADVISORY_DB"
_SNAPSHOT_LINE = re.compile(r"commit\s+(?P<commit>[0-9a-f]{7,40})\s*\((?P<date>\d{4}-\d{2}-\d{2})\)", re.S)

try:  # libyaml parses the ~thousands of advisory files several times faster
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-python PyYAML
    _Loader = yaml.SafeLoader


class AdvisoryDatabaseMissing(RuntimeError):
    """No advisory snapshot where one was looked for: the audit cannot run (a failure, never a pass)."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    commit: str
    date: str

    def describe(self) -> str:
        return f"PyPA advisory database snapshot {self.commit[:12]} ({self.date}) at {self.path}"


def locate_advisory_db(*roots: Path) -> Snapshot:
    """The snapshot named by IMMUNE_ADVISORY_DB, else `<root>/../shared/data/pypa-advisory-database`.

    In CI and here the repository is cloned at some directory with `shared/` beside it.
    """
    candidates: list[Path] = []
    if os.environ.get(ADVISORY_DB_ENV):
        candidates.append(Path(os.environ[ADVISORY_DB_ENV]))
    for root in roots:
        candidates.append(root.resolve().parent / "shared" / "data" / "pypa-advisory-database")
    for path in candidates:
        if (path / "vulns").is_dir():
            return _describe_snapshot(path)
    looked = ", ".join(str(p) for p in candidates)
    raise AdvisoryDatabaseMissing(f"no PyPA advisory database snapshot found (looked in: {looked}); "
                                  f"set {ADVISORY_DB_ENV}")


def _describe_snapshot(path: Path) -> Snapshot:
    readme = path / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    match = _SNAPSHOT_LINE.search(text)
    return Snapshot(path=path, commit=match["commit"] if match else "unknown",
                    date=match["date"] if match else "unknown")


class AdvisoryIndex:
    """Advisories per package, read lazily from `vulns/<package>/*.yaml`."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        vulns = snapshot.path / "vulns"
        self._dirs = {canonicalize_name(d.name): d for d in vulns.iterdir() if d.is_dir()}
        self._lock = threading.Lock()

    @property
    def package_count(self) -> int:
        return len(self._dirs)

    def advisories(self, name: str) -> list[dict[str, Any]]:
        directory = self._dirs.get(canonicalize_name(name))
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
        with path.open(encoding="utf-8") as handle:
            document = yaml.load(handle, Loader=_Loader)  # noqa: S506  # nosec B506 - a SafeLoader
        if isinstance(document, dict):
            loaded.append(json.loads(json.dumps(document, default=str)))  # dates -> text, as OSV serves
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
