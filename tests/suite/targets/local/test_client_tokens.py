"""Each pipeline client gets a token holding the least roles it needs; the service sees only digests."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from immune_core.api.tokens import TokenRegistry, grants

from immune_suite.targets.tokens import CLIENT_ROLES, pick_token


def test_the_entry_with_the_fewest_roles_that_covers_the_client_is_picked() -> None:
    entries = ["adm:admin", "ops:ingest+read+operate", "lo:ingest+read", "ro:read"]
    assert pick_token(entries, "load") == "lo"
    assert pick_token(entries, "fuzz") == "ops"
    assert pick_token(["adm:admin", "ro:read"], "fuzz") == "adm", "admin covers everything, last resort"
    assert pick_token(["bare"], "smoke") == "bare", "a bare entry has the service's ingest+read"
    assert pick_token(["bare"], "fuzz") is None
    digest = hashlib.sha256(b"x").hexdigest()
    assert pick_token([f"sha256:{digest}:admin"], "smoke") is None, "a digest is no token to send"


def test_the_local_stack_gives_each_client_its_own_token_and_configures_digests(
    state_dir: Path, tmp_path: Path
) -> None:
    from immune_suite.stack_config import StackConfig
    from immune_suite.targets.local import LocalTarget

    target = LocalTarget(StackConfig(name="tokens"), repo=tmp_path)
    tokens = {client: target.api_token(client) for client in CLIENT_ROLES}
    assert len(set(tokens.values())) == len(CLIENT_ROLES)
    assert LocalTarget(StackConfig(name="tokens"), repo=tmp_path).api_token("fuzz") == tokens["fuzz"]
    assert stat.S_IMODE(target.layout.client_tokens_file.stat().st_mode) == 0o600

    entries = target.service_token_entries()
    assert not any(token in entries for token in tokens.values())
    registry = TokenRegistry.parse(entries.split(","), frozenset())
    for client, token in tokens.items():
        roles = registry.roles_of(token)
        assert roles == CLIENT_ROLES[client], client
    assert not grants(registry.roles_of(tokens["load"]) or frozenset(), "operate")
    assert not grants(registry.roles_of(tokens["fuzz"]) or frozenset(), "admin")


def test_no_pipeline_client_is_admin() -> None:
    # Forcing away the last cell of a type is the one thing no gate may do to a candidate.
    assert [client for client, roles in CLIENT_ROLES.items() if "admin" in roles] == []
