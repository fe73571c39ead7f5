"""The vendored PyPA advisory snapshot: one xz-compressed JSON file the repository carries.

The security gate needs advisories where only package registries are reachable, so the repository ships
a compact copy of the PyPA advisory database (https://github.com/pypa/advisory-database, CC-BY-4.0):
every OSV advisory under its `vulns/` folder, as JSON, grouped by canonical PyPI package name, with the
upstream commit and its date. `security/refresh-advisories.sh` rebuilds it from the upstream database.

    python -m immune_suite.gates.advisory_snapshot build --from CHECKOUT [--out FILE]
    python -m immune_suite.gates.advisory_snapshot show [FILE]

File shape (format 1): `{"format": 1, "source": URL, "commit": sha, "date": "YYYY-MM-DD",
"license": "CC-BY-4.0", "advisory_count": n, "advisories": {package: [OSV advisory, ...]}}`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import lzma
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name

SNAPSHOT_FILE = Path("security") / "advisories" / "pypa-advisory-db.json.xz"
NOTICE_FILE = "NOTICE"
UPSTREAM_URL = "https://github.com/pypa/advisory-database"
LICENSE = "CC-BY-4.0"
FORMAT = 1
# The line the shared checkout copies carry in their README instead of a .git folder.
_README_LINE = re.compile(r"commit\s+(?P<commit>[0-9a-f]{7,40})\s*\((?P<date>\d{4}-\d{2}-\d{2})\)", re.S)

try:  # libyaml parses the thousands of advisory files several times faster
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-python PyYAML
    _Loader = yaml.SafeLoader


def read_advisory_file(path: Path) -> Any:
    """One advisory YAML file as OSV JSON would serve it (dates as text); whatever the file holds,
    so that callers decide what is not an advisory. Raises OSError/yaml.YAMLError on unreadable files."""
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_Loader)  # noqa: S506  # nosec B506 - a SafeLoader
    return json.loads(json.dumps(document, default=str))


class SnapshotError(RuntimeError):
    """A snapshot file or checkout that cannot be read or built from (the audit cannot rely on it)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """Where a snapshot came from: upstream commit and that commit's date (UTC calendar day)."""

    commit: str
    date: dt.date
    source: str = UPSTREAM_URL
    license: str = LICENSE
    advisory_count: int = 0

    def age_days(self, today: dt.date) -> int:
        """Whole days from the snapshot's commit date to `today`."""
        return (today - self.date).days


def checkout_origin(checkout: Path) -> tuple[str, date]:
    """Commit and commit date of an advisory-database checkout: from git, else from its README line.

    Raises SnapshotError when neither says (a snapshot of unknown date cannot be judged for age).
    """
    if (checkout / ".git").exists():
        completed = subprocess.run(  # noqa: S603 - fixed git invocation
            ["git", "-C", str(checkout), "log", "-1", "--format=%H %cs"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if completed.returncode == 0 and completed.stdout.strip():
            commit, day = completed.stdout.split()
            return commit, date.fromisoformat(day)
    readme = checkout / "README.md"
    match = _README_LINE.search(readme.read_text(encoding="utf-8")) if readme.exists() else None
    if match is None:
        raise SnapshotError(
            f"{checkout}: neither a git checkout nor a README naming 'commit SHA (YYYY-MM-DD)'"
        )
    return match["commit"], date.fromisoformat(match["date"])


def load_checkout(checkout: Path) -> dict[str, list[dict[str, Any]]]:
    """Every advisory under `checkout/vulns/*/*.yaml`, keyed by each PyPI package it affects.

    Shape: canonical package name -> advisories (OSV objects) sorted by id. Raises SnapshotError when
    `checkout` has no vulns/ folder or a file there is not an OSV advisory.
    """
    vulns = checkout / "vulns"
    if not vulns.is_dir():
        raise SnapshotError(f"{checkout} has no vulns/ folder: not a PyPA advisory database checkout")
    by_package: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(vulns.glob("*/*.yaml")):
        advisory = read_advisory_file(path)
        if not isinstance(advisory, dict) or "id" not in advisory:
            raise SnapshotError(f"{path}: not an OSV advisory")
        names = {canonicalize_name(path.parent.name)} | {
            canonicalize_name(a["package"]["name"])
            for a in advisory.get("affected", [])
            if a.get("package", {}).get("ecosystem") == "PyPI" and a["package"].get("name")
        }
        for name in names:
            by_package.setdefault(name, {})[advisory["id"]] = advisory
    return {name: [found[i] for i in sorted(found)] for name, found in sorted(by_package.items())}


def build(checkout: Path, out: Path, commit: str | None = None, day: date | None = None) -> SnapshotInfo:
    """Write the compressed snapshot of `checkout` to `out` (atomically) and its NOTICE beside it.

    `commit`/`day` name the origin when the checkout cannot (else `checkout_origin`). Raises SnapshotError
    when the origin is unknown, an advisory is malformed, or there are no advisories at all.
    """
    found_commit, found_day = (commit, day) if commit and day else checkout_origin(checkout)
    advisories = load_checkout(checkout)
    count = len({a["id"] for rows in advisories.values() for a in rows})
    if count == 0:
        raise SnapshotError(f"{checkout}: no advisories found")
    info = SnapshotInfo(commit=found_commit, date=found_day, advisory_count=count)
    document = {
        "format": FORMAT,
        "source": info.source,
        "commit": info.commit,
        "date": info.date.isoformat(),
        "license": info.license,
        "advisory_count": count,
        "advisories": advisories,
    }
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME))
    partial.replace(out)
    (out.parent / NOTICE_FILE).write_text(notice(info, out.name), encoding="utf-8")
    return info


def notice(info: SnapshotInfo, file_name: str) -> str:
    """The NOTICE text kept beside the snapshot: origin, content and the CC-BY-4.0 attribution."""
    return (
        f"{file_name}: a compressed copy of the PyPA advisory database\n"
        f"  source:  {info.source}\n"
        f"  commit:  {info.commit}\n"
        f"  date:    {info.date.isoformat()} (the commit's date)\n"
        f"  content: {info.advisory_count} OSV advisories from vulns/, as JSON grouped by package\n"
        f"  licence: {info.license} (https://creativecommons.org/licenses/by/4.0/)\n"
        'Attribution: "PyPA advisory database", https://github.com/pypa/advisory-database, by the Python\n'
        "Packaging Authority and its contributors, licensed CC-BY-4.0. Changes: converted from YAML to one\n"
        "JSON document, grouped by package name, xz-compressed; advisory contents unchanged.\n"
        "Rebuilt by security/refresh-advisories.sh; do not edit by hand.\n"
    )


def read(path: Path) -> tuple[SnapshotInfo, dict[str, list[dict[str, Any]]]]:
    """The snapshot's origin and its advisories by canonical package name; SnapshotError if unreadable."""
    try:
        document = json.loads(lzma.decompress(path.read_bytes()))
        if document.get("format") != FORMAT:
            raise SnapshotError(f"{path}: snapshot format {document.get('format')!r}, expected {FORMAT}")
        info = SnapshotInfo(
            commit=str(document["commit"]),
            date=date.fromisoformat(document["date"]),
            source=str(document["source"]),
            license=str(document["license"]),
            advisory_count=int(document["advisory_count"]),
        )
        advisories: dict[str, list[dict[str, Any]]] = {
            str(canonicalize_name(k)): list(v) for k, v in document["advisories"].items()
        }
    except (OSError, lzma.LZMAError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: unreadable advisory snapshot: {type(exc).__name__}: {exc}") from exc
    return info, advisories


def main(argv: list[str] | None = None) -> int:
    """`build --from CHECKOUT [--out FILE]` or `show [FILE]`; returns the exit code (1 when a snapshot
    cannot be built or read, with the reason on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m immune_suite.gates.advisory_snapshot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="compress an advisory-database checkout into the snapshot file")
    make.add_argument("--from", dest="checkout", type=Path, required=True)
    make.add_argument("--out", type=Path, default=SNAPSHOT_FILE)
    show = sub.add_parser("show", help="print a snapshot's origin")
    show.add_argument("file", type=Path, nargs="?", default=SNAPSHOT_FILE)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            info = build(args.checkout, args.out)
            print(
                f"{args.out}: {info.advisory_count} advisories, commit {info.commit} ({info.date}), "
                f"{args.out.stat().st_size} bytes"
            )
        else:
            info, _ = read(args.file)
            print(
                f"{args.file}: commit {info.commit} ({info.date}), {info.advisory_count} advisories, "
                f"{info.license}, from {info.source}"
            )
    except SnapshotError as exc:
        print(f"advisory snapshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
