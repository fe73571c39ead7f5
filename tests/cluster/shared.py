"""One cluster for several pytest runs at once (scripts/test.sh's cluster phase, docs/architecture.md).

The cluster phase runs its tests as streams side by side on one cluster: the staging stack's modules in
one pytest run, the prod stack's and the stack-free ones in another, then the modules that stop parts of
the cluster (test_status.py, test_teardown.py) alone. Each pytest run has its own session, so none of them
may start or stop the cluster: the phase does, and tells the runs so with `IMMUNE_SHARED_CLUSTER=<file>`,
the host as it was before `up` (what test_teardown.py compares `down` against).

    python -m tests.cluster.shared snapshot FILE   the host snapshot into FILE (exit 1 if a cluster runs)
    python -m tests.cluster.shared up FILE         snapshot, then `cluster.sh up` (`down` again if it fails)

`IMMUNE_CLUSTER_STACKS=staging` (comma-separated) keeps only those parameters of a module's `deployed`
fixture (tests/cluster/test_deploy.py), so the staging and prod halves of a module can run in different
streams; unset, both run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tests.cluster.support import host_snapshot, run_cluster_sh

SHARED_ENV = "IMMUNE_SHARED_CLUSTER"
STACKS_ENV = "IMMUNE_CLUSTER_STACKS"


def shared_snapshot() -> dict[str, list[str]] | None:
    """The snapshot file named by IMMUNE_SHARED_CLUSTER, read; None when the variable is unset.

    Raises:
        RuntimeError: the variable names a file that is missing or not a snapshot.
    """
    name = os.environ.get(SHARED_ENV, "")
    if not name:
        return None
    try:
        snapshot = json.loads(Path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{SHARED_ENV}={name}: not a host snapshot ({exc})") from exc
    if not isinstance(snapshot, dict) or "links" not in snapshot:
        raise RuntimeError(f"{SHARED_ENV}={name}: not a host snapshot (no 'links')")
    return {str(key): [str(line) for line in value] for key, value in snapshot.items()}


def kept_stacks() -> set[str] | None:
    """The stacks IMMUNE_CLUSTER_STACKS keeps, or None (all) when unset or empty."""
    names = {name.strip() for name in os.environ.get(STACKS_ENV, "").split(",") if name.strip()}
    return names or None


def snapshot(path: Path) -> int:
    """Writes the host snapshot to `path`; refuses (1) while a cluster runs: it would not be 'before up'."""
    if run_cluster_sh("status", check=False).returncode == 0:
        print("a cluster is already running: run `bash scripts/cluster.sh down` first", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(host_snapshot(), indent=1), encoding="utf-8")
    return 0


def up(path: Path) -> int:
    """snapshot(path), then `cluster.sh up`; a failed `up` is followed by `down` (the host as before)."""
    if (code := snapshot(path)) != 0:
        return code
    started = run_cluster_sh("up", check=False)
    if started.returncode != 0:
        print(started.stdout[-2000:], started.stderr[-4000:], sep="\n", file=sys.stderr)
        run_cluster_sh("down", check=False)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster.shared", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("command", choices=["snapshot", "up"], help="snapshot: the host only; up: and start")
    parser.add_argument("file", type=Path, help="where the host snapshot (JSON) is written")
    args = parser.parse_args(argv)
    return snapshot(args.file) if args.command == "snapshot" else up(args.file)


if __name__ == "__main__":
    raise SystemExit(main())
