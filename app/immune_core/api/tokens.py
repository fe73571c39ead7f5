"""API tokens and the roles they carry, parsed from ``IMMUNE_API_TOKENS``.

Each comma-separated entry is one token and, optionally, its roles joined by ``+``::

    <token>[:<role>+<role>...]            a plain token (kept only as its SHA-256 digest in memory)
    sha256:<64 hex digits>[:<roles>]      the SHA-256 of a token: the secret itself is never configured

A bare entry (no ``:roles``) gets ``IMMUNE_API_TOKEN_DEFAULT_ROLES`` (``ingest+read`` unless set), so a
token configured before roles existed can still send and read events but can no longer change the cell
population, override homeostasis or inject intel. ``admin`` implies every other role.

Tokens are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured digest (no
early exit), so the time taken depends neither on how much of a token matched nor on which entry it is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

Role: TypeAlias = Literal["ingest", "read", "operate", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_PURPOSE: dict[Role, str] = {
    "ingest": "POST /api/v1/events (flows and endpoint events)",
    "read": "every GET under /api/v1 and the /ws/stream WebSocket",
    "operate": "create, clone and delete cells, homeostasis overrides, intel events",
    "admin": "everything, including removing the last cell of a kind detection needs (?force=true)",
}
DEFAULT_BARE_ROLES = "ingest+read"
_HASH_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# Separators of the configuration syntax cannot be part of a token; whitespace would be trimmed away.
_FORBIDDEN_IN_TOKEN = re.compile(r"[\s:,]")


class TokenConfigError(ValueError):
    """An entry of ``IMMUNE_API_TOKENS`` is malformed; the message names its position, never the secret."""


def parse_roles(text: str, *, where: str = "roles") -> frozenset[Role]:
    """``"ingest+read"`` -> ``{"ingest", "read"}``; raises ``TokenConfigError`` on an unknown role."""
    names = [part.strip() for part in text.split("+") if part.strip()]
    if not names:
        raise TokenConfigError(f"{where}: no role given; use {'+'.join(ROLES)}")
    unknown = sorted(set(names) - set(ROLES))
    if unknown:
        raise TokenConfigError(f"{where}: unknown role(s) {unknown}; known roles: {', '.join(ROLES)}")
    return frozenset(name for name in ROLES if name in names)


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def hash_entry(entry: str) -> str:
    """Rewrite one plain entry as its ``sha256:`` form (roles kept); hashed entries pass unchanged.

    This is what an operator (or the Pulumi program) puts in a deployment's configuration so that the
    cluster holds only digests.
    """
    secret, _, roles = entry.strip().partition(":")
    if secret == _HASH_PREFIX.rstrip(":"):
        return entry.strip()
    hashed = _HASH_PREFIX + hashlib.sha256(secret.encode()).hexdigest()
    return f"{hashed}:{roles}" if roles else hashed


@dataclass(frozen=True)
class TokenGrant:
    digest: bytes
    roles: frozenset[Role]
    hashed: bool  # configured as a digest (no plaintext known)


def parse_entry(entry: str, default_roles: frozenset[Role], position: int) -> tuple[TokenGrant, str | None]:
    """One entry -> its grant and, for a plain entry, the plain token (for local clients only)."""
    where = f"IMMUNE_API_TOKENS entry {position}"
    text = entry.strip()
    if text.startswith(_HASH_PREFIX):
        hex_digest, _, roles_text = text[len(_HASH_PREFIX) :].partition(":")
        hex_digest = hex_digest.lower()
        if not _HEX_DIGEST.fullmatch(hex_digest):
            raise TokenConfigError(f"{where}: sha256: must be followed by 64 hex digits")
        roles = parse_roles(roles_text, where=where) if roles_text else default_roles
        return TokenGrant(bytes.fromhex(hex_digest), roles, hashed=True), None
    secret, _, roles_text = text.partition(":")
    if not secret or _FORBIDDEN_IN_TOKEN.search(secret):
        raise TokenConfigError(f"{where}: a token is non-empty and holds no whitespace, ':' or ','")
    roles = parse_roles(roles_text, where=where) if roles_text else default_roles
    return TokenGrant(digest_of(secret), roles, hashed=False), secret


class TokenRegistry:
    """The configured tokens as digests with their roles."""

    def __init__(self, grants: Iterable[TokenGrant]) -> None:
        self._grants = tuple(grants)

    @classmethod
    def parse(cls, entries: Iterable[str], default_roles: frozenset[Role]) -> TokenRegistry:
        return cls(parse_entry(entry, default_roles, i)[0] for i, entry in enumerate(entries))

    def __len__(self) -> int:
        return len(self._grants)

    def roles_of(self, token: str) -> frozenset[Role] | None:
        """The roles of ``token`` (union when configured twice), or None when it is not configured.

        Every configured digest is compared, whatever matched earlier: constant time in the token.
        """
        candidate = digest_of(token)
        matched = False
        roles: set[Role] = set()
        for grant in self._grants:
            hit = hmac.compare_digest(candidate, grant.digest)
            matched |= hit
            if hit:
                roles |= grant.roles
        return frozenset(roles) if matched else None


def grants(roles: frozenset[Role], needed: Role) -> bool:
    """True when ``roles`` allow ``needed`` (``admin`` allows everything)."""
    return needed in roles or "admin" in roles
