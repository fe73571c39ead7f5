"""Ed25519 signatures over promotion records.

The key pair is generated once into the state dir (private key 0600). A record is signed over its
canonical JSON (sorted keys, no whitespace) without the `signature` block, so any edit to any
field — a verdict, a threshold, a timestamp, an approver — breaks verification.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from immune_suite.state_dir import private_dir, state_root, write_atomic

ALGORITHM = "Ed25519"
PRIVATE_KEY_NAME = "promotion-ed25519.pem"
PUBLIC_KEY_NAME = "promotion-ed25519.pub.pem"


def keys_dir() -> Path:
    return state_root() / "keys"


def canonical_bytes(record: dict[str, Any]) -> bytes:
    unsigned = {key: value for key, value in record.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def load_or_create_private_key(directory: Path | None = None) -> Ed25519PrivateKey:
    directory = private_dir(directory or keys_dir())
    private_path = directory / PRIVATE_KEY_NAME
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(private_path, pem.decode(), mode=0o600)
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        write_atomic(directory / PUBLIC_KEY_NAME, public_pem.decode(), mode=0o644)
    loaded = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{private_path} is not an Ed25519 private key")
    return loaded


def load_public_key(path: Path | None = None) -> Ed25519PublicKey:
    path = path or keys_dir() / PUBLIC_KEY_NAME
    loaded = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return loaded


def sign_record(record: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    signature = key.sign(canonical_bytes(record))
    public = key.public_key()
    return {
        **{k: v for k, v in record.items() if k != "signature"},
        "signature": {
            "algorithm": ALGORITHM,
            "key_id": key_id(public),
            "public_key": base64.b64encode(_raw_public(public)).decode(),
            "value": base64.b64encode(signature).decode(),
        },
    }


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    reason: str
    key_id: str | None = None


def verify_record(record: dict[str, Any], trusted: Ed25519PublicKey) -> VerifyResult:
    """Valid only when signed by the trusted key and unchanged since (the embedded key is not trusted)."""
    block = record.get("signature")
    if not isinstance(block, dict) or block.get("algorithm") != ALGORITHM:
        return VerifyResult(False, "record carries no Ed25519 signature")
    if block.get("key_id") != key_id(trusted):
        signer = block.get("key_id")
        return VerifyResult(False, f"signed by key {signer}, not the trusted key {key_id(trusted)}")
    try:
        trusted.verify(base64.b64decode(block["value"], validate=True), canonical_bytes(record))
    except (InvalidSignature, ValueError, KeyError):
        return VerifyResult(False, "signature does not match the record: it was modified after signing")
    return VerifyResult(True, "signature valid", key_id(trusted))


def verify_artifacts(record: dict[str, Any]) -> list[str]:
    """Problems with artifacts the record names that still exist locally (changed contents)."""
    problems = []
    for stage in record.get("stages", []):
        verdict = stage.get("verdict") or {}
        for artifact in verdict.get("artifacts", []):
            path = Path(artifact["path"])
            if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != artifact["sha256"]:
                problems.append(f"{path}: sha256 differs from the record")
    return problems
