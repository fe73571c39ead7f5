"""Which API token each pipeline client uses: the least role set it needs (docs/service.md, "Roles").

The service reads `IMMUNE_API_TOKENS` entries `<token>[:<role>+<role>]` or `sha256:<hex>[:<roles>]`;
a bare entry has the service's default roles (`ingest+read`). The pipeline's clients:

- `smoke`, `load`, `chaos`: send events and read them back (stats, threats, coordination, the stream);
- `fuzz`: exercises every operation, so it may also change the cell population and the homeostasis
  override (`operate`) -- but not force the removal of a kind's last cell (`admin`), so fuzzing cannot
  leave a candidate that cannot detect.
"""

from __future__ import annotations

import hashlib
from typing import Literal, TypeAlias

Client: TypeAlias = Literal["smoke", "load", "chaos", "fuzz"]
CLIENT_ROLES: dict[Client, frozenset[str]] = {
    "smoke": frozenset({"ingest", "read"}),
    "load": frozenset({"ingest", "read"}),
    "chaos": frozenset({"ingest", "read"}),
    "fuzz": frozenset({"ingest", "read", "operate"}),
}
BARE_ROLES = frozenset({"ingest", "read"})
HASHED_PREFIX = "sha256:"  # an entry naming a token's digest, not the token


def entry_roles(entry: str) -> tuple[str, frozenset[str]]:
    """`"tok:ingest+read"` -> (`"tok"`, {ingest, read}); a bare entry gets the service's default roles."""
    token, _, roles = entry.strip().partition(":")
    return token, frozenset(r for r in roles.split("+") if r) if roles else BARE_ROLES


def covers(roles: frozenset[str], needed: frozenset[str]) -> bool:
    return "admin" in roles or needed <= roles


def pick_token(entries: list[str], client: Client) -> str | None:
    """The plain token among `entries` that covers `client`'s roles with the fewest roles, else None.

    Hashed entries (`sha256:`) are skipped: there is no token to send.
    """
    needed = CLIENT_ROLES[client]
    usable = [
        (len(roles) + (10 if "admin" in roles else 0), token)
        for token, roles in map(entry_roles, entries)
        if token and not f"{token}:".startswith(HASHED_PREFIX) and covers(roles, needed)
    ]
    return min(usable)[1] if usable else None


def hashed_entry(token: str, roles: frozenset[str]) -> str:
    """The service-side entry for `token`: its SHA-256 and roles, so the plain token is never configured."""
    return f"sha256:{hashlib.sha256(token.encode()).hexdigest()}:{'+'.join(sorted(roles))}"
