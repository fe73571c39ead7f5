"""The stack file `scripts/cluster-deploy.sh` deploys into the local cluster: the committed settings with
`immune_infra.local_cluster`'s overrides merged in, every third-party image by digest.

`scripts/images.sh push` records what it pushed in `<state>/images/images.json`
(`{"images": {<name>: {"ref": "<registry>/immune/<name>@sha256:...", ...}}, "registry": ...}`); those
`ref`s (name@digest, never a movable tag) replace the public images of the committed
`Pulumi.<stack>.yaml` in a project copy only, so the committed files keep the public images for users
with a registry.

    python -m immune_suite.targets.kubernetes.local_deploy --stack staging --context DIR --write FILE
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from immune_infra.config import ConfigError
from immune_infra.local_cluster import (
    LocalClusterError,
    overrides,
    read_versions,
    write_stack_file,
)
from immune_infra.render import merge

# <registry>/<path>@sha256:<64 hex>: what a deploy by digest needs (a tag could move under the cluster).
_DIGEST_REF = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")


def default_images_json() -> Path:
    state = os.environ.get("IMMUNE_STATE_DIR") or str(Path.home() / ".local" / "state" / "active-immune-core")
    return Path(os.environ.get("IMAGES_JSON") or Path(state) / "images" / "images.json")


def pushed_images(path: Path) -> dict[str, str]:
    """name -> `ref` (name@digest) from images.json. Raises LocalClusterError if the file is missing or
    unreadable, or if a ref is not pinned by a sha256 digest."""
    if not path.is_file():
        raise LocalClusterError(f"{path} missing: run scripts/images.sh build && scripts/images.sh push")
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        refs = {name: str(entry["ref"]) for name, entry in images.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LocalClusterError(f"{path} is not scripts/images.sh's images.json: {exc!r}") from exc
    unpinned = sorted(name for name, ref in refs.items() if not _DIGEST_REF.match(ref))
    if unpinned:
        raise LocalClusterError(f"{path}: not pinned by digest: {', '.join(unpinned)}")
    return refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stack file for `pulumi up` into the local cluster.")
    parser.add_argument("--stack", choices=("staging", "prod"), required=True)
    parser.add_argument("--images-json", type=Path, default=None)
    parser.add_argument("--context", type=Path, required=True, help="output of `scripts/images.sh context`")
    parser.add_argument("--gateway-name", default="immune-gateway")
    parser.add_argument("--gateway-namespace", default="immune-gateway")
    parser.add_argument("--write", type=Path, required=True, help="the project copy's stack file")
    parser.add_argument(
        "--overrides",
        type=Path,
        default=None,
        help="JSON settings merged last (e.g. a test's rollout images)",
    )
    args = parser.parse_args(argv)
    try:
        local = overrides(
            args.stack,
            pushed_images(args.images_json or default_images_json()),
            read_versions(),
            args.context,
            args.gateway_name,
            args.gateway_namespace,
        )
        if args.overrides is not None:
            local = merge(local, json.loads(args.overrides.read_text(encoding="utf-8")))
    except (LocalClusterError, ValueError, OSError) as exc:
        parser.exit(1, f"local_deploy: {exc}\n")
    try:
        write_stack_file(args.write, local)
    except ConfigError as exc:
        parser.exit(1, f"local_deploy: {exc}\n")
    print(f"local_deploy: {args.write} carries the local cluster's settings for {args.stack}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
