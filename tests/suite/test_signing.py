"""Promotion records are signed with Ed25519; any edit breaks verification."""

from __future__ import annotations

import copy
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from immune_suite.signing import (
    PRIVATE_KEY_NAME,
    keys_dir,
    load_or_create_private_key,
    load_public_key,
    sign_record,
    verify_artifacts,
    verify_record,
)

RECORD = {
    "run_id": "r1",
    "outcome": "promoted",
    "stages": [
        {"id": "canary-10", "verdict": {"measurements": [{"name": "p95", "value": 12.5}], "artifacts": []}}
    ],
    "approvals": [{"by": "alice@host"}],
}


def test_key_is_created_once_and_private(state_dir: Path) -> None:
    first = load_or_create_private_key()
    second = load_or_create_private_key()
    assert first.public_key().public_bytes_raw() == second.public_key().public_bytes_raw()
    mode = stat.S_IMODE((keys_dir() / PRIVATE_KEY_NAME).stat().st_mode)
    assert mode == 0o600


def test_signed_record_verifies(state_dir: Path) -> None:
    signed = sign_record(RECORD, load_or_create_private_key())
    result = verify_record(signed, load_public_key())
    assert result.valid, result.reason


def test_any_edit_breaks_the_signature(state_dir: Path) -> None:
    signed = sign_record(RECORD, load_or_create_private_key())
    for edit in (
        lambda r: r.__setitem__("outcome", "rolled_back"),
        lambda r: r["stages"][0]["verdict"]["measurements"][0].__setitem__("value", 12.6),
        lambda r: r["approvals"][0].__setitem__("by", "mallory@host"),
        lambda r: r.__setitem__("extra", True),
    ):
        tampered = copy.deepcopy(signed)
        edit(tampered)
        result = verify_record(tampered, load_public_key())
        assert not result.valid
        assert "modified" in result.reason


def test_resigning_with_another_key_is_rejected(state_dir: Path) -> None:
    load_or_create_private_key()
    forged = sign_record({**RECORD, "outcome": "rolled_back"}, Ed25519PrivateKey.generate())
    result = verify_record(forged, load_public_key())
    assert not result.valid and "not the trusted key" in result.reason


def test_unsigned_record_is_rejected(state_dir: Path) -> None:
    load_or_create_private_key()
    assert not verify_record(dict(RECORD), load_public_key()).valid


def test_changed_artifact_is_reported(tmp_path: Path) -> None:
    artifact = tmp_path / "a.json"
    artifact.write_text("{}")
    import hashlib

    record = {
        "stages": [
            {"verdict": {"artifacts": [{"path": str(artifact), "sha256": hashlib.sha256(b"{}").hexdigest()}]}}
        ]
    }
    assert verify_artifacts(record) == []
    artifact.write_text("{} ")
    assert len(verify_artifacts(record)) == 1
