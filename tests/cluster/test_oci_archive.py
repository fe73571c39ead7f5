"""cluster/oci_archive.py: reproducible one-layer OCI archives, clear errors on bad input.

Pure-Python (no cluster needed); the archive's acceptance by containerd is covered by the cluster
tests, which import the pause and probe images made with it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.cluster.support import REPO

PACKER = REPO / "cluster" / "oci_archive.py"


def pack(tmp_path: Path, *files: str, name: str = "aic.local/x:1") -> subprocess.CompletedProcess[str]:
    out = tmp_path / "img.tar"
    return subprocess.run(
        [sys.executable, str(PACKER), "--name", name, "--entrypoint", "/bin/x", "--out", str(out), *files],
        capture_output=True,
        text=True,
        check=False,
    )


def test_archive_is_a_valid_reproducible_oci_layout(tmp_path: Path) -> None:
    exe = tmp_path / "x"
    exe.write_bytes(b"\x7fELF fake")
    exe.chmod(0o755)
    assert pack(tmp_path, f"{exe}=/bin/x").returncode == 0
    first = (tmp_path / "img.tar").read_bytes()
    assert pack(tmp_path, f"{exe}=/bin/x").returncode == 0
    assert (tmp_path / "img.tar").read_bytes() == first  # byte-for-byte reproducible

    with tarfile.open(tmp_path / "img.tar") as tar:
        blobs = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    index = json.loads(blobs["index.json"])
    (desc,) = index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == "aic.local/x:1"
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
    # Every blob is stored under its own sha256.
    for name, data in blobs.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(blobs["blobs/sha256/" + desc["digest"].split(":")[1]])
    layer = blobs["blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]]
    config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert config["config"]["Entrypoint"] == ["/bin/x"]
    layer_path = tmp_path / "layer.tar"
    layer_path.write_bytes(layer)
    with tarfile.open(layer_path) as tar:
        member = tar.getmember("bin/x")
        assert member.mode == 0o755 and member.mtime == 0 and member.uid == 0
        assert tar.extractfile(member).read() == b"\x7fELF fake"  # type: ignore[union-attr]


@pytest.mark.parametrize("spec", ["missing=/bin/x", "{exe}=relative/path", "{exe}"])
def test_bad_file_specs_are_refused(tmp_path: Path, spec: str) -> None:
    exe = tmp_path / "x"
    exe.write_bytes(b"x")
    proc = pack(tmp_path, spec.format(exe=exe))
    assert proc.returncode == 2
    assert "SOURCE=/absolute/image/path" in proc.stderr or "no such file" in proc.stderr
    assert not (tmp_path / "img.tar").exists()
