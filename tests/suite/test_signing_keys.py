"""A configured stack signs with the key its configuration gives; `verify` trusts the committed public key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from immune_suite import signing
from immune_suite.cli import main
from immune_suite.paths import STACKS_DIR
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.signing import (
    KEY_ENV,
    KEY_FILE_ENV,
    PRIVATE_KEY_NAME,
    SigningKeyError,
    keys_dir,
    load_public_key,
    sign_record,
    signing_key_for,
    verify_record,
)
from immune_suite.stack_config import load_stack

RECORD = {"run_id": "r1", "stack": "staging", "outcome": "promoted", "stages": []}


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _commit_public(key: Ed25519PrivateKey, directory: Path, stack: str = "staging") -> Path:
    path = directory / f"{stack}.pub"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def test_kubernetes_stacks_sign_with_a_configured_key_and_commit_its_public_half() -> None:
    for name in ("local", "ci"):
        assert load_stack(name).signing_key_source == "generated"
    configured = [
        stack.name
        for stack in map(load_stack, sorted(p.stem for p in STACKS_DIR.glob("*.yaml")))
        if stack.signing_key_source == "configured"
    ]
    assert {"staging", "prod", "cluster"} <= set(configured)
    for name in set(configured) - {"cluster"}:  # every configured stack has a committed Ed25519 public key
        load_public_key(STACKS_DIR / "keys" / f"{name}.pub")
    # ... but the local cluster's: its tests make a key pair per run (IMMUNE_KEYS_DIR, tests/cluster/).
    assert not (STACKS_DIR / "keys" / "cluster.pub").exists()


def test_configured_stack_without_a_key_refuses_and_generates_nothing(
    state_dir: Path, tmp_path: Path
) -> None:
    _commit_public(Ed25519PrivateKey.generate(), tmp_path)
    with pytest.raises(SigningKeyError, match=KEY_ENV):
        signing_key_for("staging", "configured", {}, tmp_path)
    assert not (keys_dir() / PRIVATE_KEY_NAME).exists()


def test_configured_key_that_is_not_the_committed_one_is_refused(state_dir: Path, tmp_path: Path) -> None:
    _commit_public(Ed25519PrivateKey.generate(), tmp_path)
    other = _pem(Ed25519PrivateKey.generate())
    with pytest.raises(SigningKeyError, match="not the committed") as error:
        signing_key_for("staging", "configured", {KEY_ENV: other}, tmp_path)
    assert "PRIVATE KEY" not in str(error.value)  # the secret never reaches a message


def test_missing_committed_key_and_garbage_key_are_clear_errors(tmp_path: Path) -> None:
    key = _pem(Ed25519PrivateKey.generate())
    with pytest.raises(SigningKeyError, match=r"staging\.pub is missing"):
        signing_key_for("staging", "configured", {KEY_ENV: key}, tmp_path)
    _commit_public(Ed25519PrivateKey.generate(), tmp_path)
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        signing_key_for("staging", "configured", {KEY_ENV: "not a key"}, tmp_path)
    with pytest.raises(SigningKeyError, match="cannot read"):
        signing_key_for("staging", "configured", {KEY_FILE_ENV: str(tmp_path / "absent.pem")}, tmp_path)


def test_verify_checks_against_the_committed_key_by_default(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed_dir = tmp_path / "keys"
    committed_dir.mkdir()
    monkeypatch.setattr(signing, "COMMITTED_KEYS_DIR", committed_dir)
    key = Ed25519PrivateKey.generate()
    _commit_public(key, committed_dir)
    key_file = tmp_path / "staging.pem"
    key_file.write_text(_pem(key))

    signed = sign_record(RECORD, signing_key_for("staging", "configured", {KEY_FILE_ENV: str(key_file)}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(signed))
    assert main(["verify", str(good)]) == ExitCode.OK  # good: signed by the configured key

    tampered = copy.deepcopy(signed)
    tampered["outcome"] = "rolled_back"
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    assert main(["verify", str(bad)]) == ExitCode.VERIFY_FAILED

    # Signed by another key (e.g. one a runner generated for itself): the state dir holds that key,
    # but the committed key is the trusted one, so the record does not verify.
    runner_key = signing.load_or_create_private_key()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(sign_record({**RECORD, "run_id": "r2"}, runner_key)))
    assert main(["verify", str(forged)]) == ExitCode.VERIFY_FAILED
    assert not verify_record(
        json.loads(forged.read_text()), load_public_key(committed_dir / "staging.pub")
    ).valid


def test_promote_on_a_configured_stack_without_its_key_refuses_before_it_starts(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert main(["promote", "--stack", "staging"]) == ExitCode.USAGE
    assert KEY_ENV in capsys.readouterr().err
    assert not (keys_dir() / PRIVATE_KEY_NAME).exists()  # no key was generated in its place


def test_immune_keys_dir_names_where_the_public_keys_are(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test cluster (tests/cluster/) or a fork keeps its stacks' public keys out of stacks/keys/."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key = Ed25519PrivateKey.generate()
    _commit_public(key, keys)
    key_file = tmp_path / "staging.pem"
    key_file.write_text(_pem(key))
    environ = {KEY_FILE_ENV: str(key_file)}
    with pytest.raises(SigningKeyError, match="is not the committed"):  # stacks/keys/staging.pub is another
        signing_key_for("staging", "configured", environ)
    monkeypatch.setenv("IMMUNE_KEYS_DIR", str(keys))
    signed = tmp_path / "signed.json"
    signed.write_text(json.dumps(sign_record(RECORD, signing_key_for("staging", "configured", environ))))
    assert main(["verify", str(signed)]) == ExitCode.OK
    monkeypatch.delenv("IMMUNE_KEYS_DIR")
    assert main(["verify", str(signed)]) == ExitCode.VERIFY_FAILED  # not the committed staging key
