"""The cluster holds API token digests with their roles, never the tokens (issue 8, "Authorization")."""

from __future__ import annotations

import hashlib
import json

from immune_infra.credentials import service_token_entries
from immune_infra.render import RenderedStack, render_only_secrets


def _sha(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def test_entries_are_hashed_with_their_roles_kept() -> None:
    digest = _sha("already")
    entries = service_token_entries(f" tok-a:ingest+read , tok-b ,{digest}:admin,,")
    assert entries == f"{_sha('tok-a')}:ingest+read,{_sha('tok-b')},{digest}:admin"
    assert "tok-a" not in entries and "tok-b" not in entries


def test_the_api_secret_holds_only_digests(stack: RenderedStack) -> None:
    plain = render_only_secrets(stack.stack)["apiTokens"]
    secret = stack.find("Secret", "immune-core-api")
    assert secret["stringData"]["tokens"] == _sha(plain)
    assert plain not in json.dumps(stack.manifests)
