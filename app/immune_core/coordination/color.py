"""Which deployment colour is live: only its replicas consume production input and campaign for the lease.

Blue/green keeps the candidate colour running beside the stable one before the switch. Both colours
share ONE Kafka consumer group and ONE leader lease on purpose: a per-colour group would start the new
colour without the old one's committed offsets (events re-read or skipped), and a per-colour lease would
give each colour its own leader with its own fencing tokens (two singleton writers at once). Instead
the scope is the *activity*: a replica consumes and campaigns only while its colour is the active one,
read from the ``deployment_state`` row ``active_color`` that the pipeline writes at the switch
(``immune-core activate COLOUR``). At a switch the new colour joins the group and the old one leaves
within one ``refresh_s`` each; while both are members Kafka's group protocol gives each partition to
one member only, and the old leader releases the lease so the new colour's replica takes it with a
larger fencing token (any late write of the old one is refused by ``fenced``). No row means no
blue/green: every colour is live, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from immune_core.observability.logging import get_logger
from immune_core.storage.database import Database, StoreUnavailable

log = get_logger(__name__)

ACTIVE_COLOR_KEY = "active_color"


async def read_active_color(database: Database) -> str | None:
    """The active colour, or ``None`` when none was set. Raises ``StoreUnavailable`` when unreachable."""
    async with database.session() as conn:
        value = await conn.fetchval("SELECT value FROM deployment_state WHERE name = $1", ACTIVE_COLOR_KEY)
    return str(value) if value is not None else None


async def set_active_color(database: Database, color: str) -> None:
    """Make ``color`` the live colour (the switch); its replicas take over within their refresh interval."""
    if not color or not color.isidentifier():
        raise ValueError(f"not a colour name: {color!r}")
    async with database.transaction() as conn:
        await conn.execute(
            "INSERT INTO deployment_state (name, value, updated_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            ACTIVE_COLOR_KEY,
            color,
            time.time(),
        )


class ColorGate:
    """Answers "is my colour live?", re-reading the store at most every ``refresh_s`` seconds.

    While the store is unreachable the last answer stands (nothing can be committed or fenced then
    anyway); before the first answer the replica counts as idle, so a start during an outage never
    consumes on the wrong colour's behalf.
    """

    def __init__(
        self,
        database: Database,
        color: str,
        refresh_s: float = 1.0,
        observe: Callable[[bool], None] | None = None,
    ) -> None:
        """`observe` is told every answer (the runtime sets the `immune_deployment_live` gauge from it,
        so an operator, or a test on the cluster, sees which replicas are idle)."""
        self._db = database
        self.color = color
        self._refresh_s = refresh_s
        self._live: bool | None = None
        self._checked_at = 0.0
        self._observe = observe

    async def is_live(self) -> bool:
        now = time.monotonic()
        if self._live is not None and now - self._checked_at < self._refresh_s:
            return self._live
        try:
            active = await read_active_color(self._db)
        except (StoreUnavailable, OSError) as exc:
            log.warning("active_color_unreadable", error=type(exc).__name__)
            return bool(self._live)
        live = active is None or active == self.color
        if live != self._live:
            log.info("deployment_color_role", color=self.color, active=active, live=live)
        self._live, self._checked_at = live, now
        if self._observe is not None:
            self._observe(live)
        return live
