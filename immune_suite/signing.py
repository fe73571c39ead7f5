"""Ed25519 signatures over promotion records.

Where the signing key comes from depends on the stack (`StackConfig.signing_key_source`):

- "configured" (staging, prod: every Kubernetes stack by default): the private key is given by
  configuration — `IMMUNE_SIGNING_KEY` (the PEM text, e.g. a CI secret) or `IMMUNE_SIGNING_KEY_FILE`
  (a path to the PEM) — and is never generated. Its public key is committed as
  `stacks/keys/<stack>.pub`; a configured key whose public half differs from the committed one is
  refused before anything is signed, so no record is written that nobody can verify.
- "generated" (local, ci): a key pair is generated once into the state dir (private key 0600).

`immune-suite verify` trusts the committed `stacks/keys/<record's stack>.pub` when it exists, else
(generated stacks only) the state dir's key. A record is signed over its canonical JSON (sorted keys,
no whitespace) without the `signature` block, so any edit to any field — a verdict, a threshold, a
timestamp, an approver — breaks verification. Signature scheme: Ed25519 (RFC 8032).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from immune_suite.paths import STACKS_DIR
from immune_suite.state_dir import private_dir, state_root, write_atomic

ALGORITHM = "Ed25519"
PRIVATE_KEY_NAME = "promotion-ed25519.pem"
PUBLIC_KEY_NAME = "promotion-ed25519.pub.pem"
KEY_ENV = "IMMUNE_SIGNING_KEY"  # the private key's PEM text (a CI secret)
KEY_FILE_ENV = "IMMUNE_SIGNING_KEY_FILE"  # or a path to it
COMMITTED_KEYS_DIR = STACKS_DIR / "keys"
KEYS_DIR_ENV = "IMMUNE_KEYS_DIR"  # where the stacks' public keys are, instead of stacks/keys/


class SigningKeyError(RuntimeError):
    """The stack's signing key is missing, unreadable or not the one its committed public key names."""


def committed_public_key_path(stack: str, directory: Path | None = None) -> Path:
    """`<directory>/<stack>.pub`; the directory defaults to `$IMMUNE_KEYS_DIR`, else the committed
    `stacks/keys/` (a fork or a test cluster whose keys are kept elsewhere names theirs there)."""
    return (directory or Path(os.environ.get(KEYS_DIR_ENV) or COMMITTED_KEYS_DIR)) / f"{stack}.pub"


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


def configured_private_key(environ: dict[str, str]) -> Ed25519PrivateKey:
    """The private key from `IMMUNE_SIGNING_KEY` (PEM text) or `IMMUNE_SIGNING_KEY_FILE` (PEM path).

    Raises SigningKeyError when neither is set or the key is not an Ed25519 PEM; the message never
    carries the key's text.
    """
    text = environ.get(KEY_ENV, "").strip()
    source = KEY_ENV
    if not text and environ.get(KEY_FILE_ENV):
        path = Path(environ[KEY_FILE_ENV])
        source = f"{KEY_FILE_ENV}={path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SigningKeyError(f"{source}: cannot read the signing key ({error.strerror})") from None
    if not text:
        raise SigningKeyError(
            f"this stack signs with a configured key: set {KEY_ENV} (PEM text) or {KEY_FILE_ENV} (path)"
        )
    try:
        loaded = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{source}: not a PEM private key without passphrase") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SigningKeyError(f"{source}: not an Ed25519 private key")
    return loaded


def signing_key_for(
    stack: str, source: str, environ: dict[str, str], keys_directory: Path | None = None
) -> Ed25519PrivateKey:
    """The key that signs `stack`'s records: configured (checked against the committed key) or generated.

    Raises SigningKeyError for a configured stack without a key, without a committed public key, or
    whose key is not the committed one.
    """
    if source == "generated":
        return load_or_create_private_key()
    key = configured_private_key(environ)
    committed_path = committed_public_key_path(stack, keys_directory)
    if not committed_path.is_file():
        raise SigningKeyError(f"{committed_path} is missing: commit the stack's public key before signing")
    committed = load_public_key(committed_path)
    if key_id(key.public_key()) != key_id(committed):
        raise SigningKeyError(
            f"the configured signing key ({key_id(key.public_key())}) is not the committed "
            f"{committed_path.name} ({key_id(committed)}): its records would not verify"
        )
    return key


def trusted_key_for(record: dict[str, Any], keys_directory: Path | None = None) -> Ed25519PublicKey:
    """The key a record is verified against by default: its stack's committed key, else the state dir's."""
    stack = record.get("stack")
    if isinstance(stack, str) and stack:
        committed = committed_public_key_path(stack, keys_directory)
        if committed.is_file():
            return load_public_key(committed)
    return load_public_key()


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
