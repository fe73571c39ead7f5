"""Pack a few local files into a one-layer OCI image archive that `ctr images import` accepts.

Used for images that need no base at all: the pod sandbox ("pause", compiled from Kubernetes'
own build/pause/linux/pause.c) and the static test server of tests/cluster. The archive is an
OCI image layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md) in a
tar, with the image name in the index annotations `io.containerd.image.name` and
`org.opencontainers.image.ref.name`, which is what containerd's importer reads.

The output is byte-for-byte reproducible: fixed mtimes, uid/gid 0, sorted entries, no gzip.

Usage:
    python3 cluster/oci_archive.py --name aic.local/pause:v1.37.2 --entrypoint /pause \
        --user 65535:65535 --out pause.tar /path/to/pause=/pause
Exit code 2 with a message on bad input (missing file, malformed FILE=PATH).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

_MTIME = 0  # reproducible layers: every entry gets the epoch as its mtime


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob: its bytes, sha256 digest (``sha256:<hex>``) and media type."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = _MTIME
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = _MTIME
    tar.addfile(info)


def build_layer(files: list[tuple[Path, str]]) -> bytes:
    """Return an uncompressed layer tar holding each (source, absolute image path) pair.

    Parent directories are created; file modes keep the source's executable bit.
    Raises FileNotFoundError when a source is missing.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for src, dst in sorted(files, key=lambda pair: pair[1]):
            rel = dst.lstrip("/")
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    _add_dir(tar, d)
            data = src.read_bytes()
            mode = 0o755 if src.stat().st_mode & 0o111 else 0o644
            _add_bytes(tar, rel, data, mode)
    return buf.getvalue()


def build_archive(name: str, files: list[tuple[Path, str]], entrypoint: list[str], user: str) -> bytes:
    """Return the OCI layout tar (bytes) of a linux/amd64 image ``name`` made of ``files``."""
    layer = Blob(build_layer(files), "application/vnd.oci.image.layer.v1.tar")
    config = Blob(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": entrypoint, "User": user, "Env": ["PATH=/"]},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                "history": [{"created_by": "cluster/oci_archive.py"}],
            },
            sort_keys=True,
        ).encode(),
        "application/vnd.oci.image.config.v1+json",
    )
    manifest = Blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            },
            sort_keys=True,
        ).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    )
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            manifest.descriptor(
                platform={"architecture": "amd64", "os": "linux"},
                annotations={
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            )
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
        _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode(), 0o644)
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for blob in (layer, config, manifest):
            _add_bytes(tar, "blobs/sha256/" + blob.digest.split(":", 1)[1], blob.data, 0o644)
    return out.getvalue()


def _parse_file(spec: str) -> tuple[Path, str]:
    src, sep, dst = spec.partition("=")
    if not sep or not src or not dst.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected SOURCE=/absolute/image/path, got {spec!r}")
    path = Path(src)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {src}")
    return path, dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="image reference, e.g. aic.local/pause:v1.37.2")
    parser.add_argument("--entrypoint", required=True, action="append", help="repeat for each argv item")
    parser.add_argument("--user", default="65535:65535")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("files", nargs="+", type=_parse_file, metavar="SOURCE=/PATH")
    args = parser.parse_args(argv)
    data = build_archive(args.name, args.files, args.entrypoint, args.user)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    print(f"{args.out}: {args.name} ({len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
