"""What the API reads and writes of the homeostatic state (the leader's controller owns the rest)."""

from __future__ import annotations

import time

from immune_core.homeostasis.controller import HomeostasisState, read_state
from immune_core.storage.database import Database


async def current_state(database: Database) -> HomeostasisState | None:
    """The stored state (level, score, override), or ``None`` before the leader's first tick.

    Raises ``StoreUnavailable``.
    """
    async with database.session() as conn:
        return await read_state(conn)


async def set_override(database: Database, level: int | None, duration_s: float, reason: str | None) -> None:
    """Any replica may record an override; the leader applies it on its next tick.

    ``level`` ``None`` clears it; ``duration_s`` in seconds. Raises ``StoreUnavailable``.
    """
    now = time.time()
    until = now + duration_s if level is not None else None
    async with database.transaction() as conn:
        await conn.execute(
            "INSERT INTO homeostasis (id, level, score, updated_at, token) VALUES (1, 0, 0, $1, 0)"
            " ON CONFLICT (id) DO NOTHING",
            now,
        )
        await conn.execute(
            "UPDATE homeostasis SET override_level = $1, override_until = $2, override_reason = $3"
            " WHERE id = 1",
            level,
            until,
            reason,
        )
