"""Reads of the recorded response decisions (``response_actions``) for the API."""

from __future__ import annotations

from immune_core.storage.database import Database, Row


async def decisions(database: Database, *, decision: str | None, limit: int) -> list[Row]:
    """The latest decisions, newest first; ``decision`` ``allow``/``deny`` or None for both.

    Raises ``StoreUnavailable``.
    """
    async with database.session() as conn:
        return await conn.fetch(
            "SELECT action_id, threat_id, kind, target, critical, decision, reason, validator, degraded,"
            " decided_at FROM response_actions WHERE (CAST($2 AS TEXT) IS NULL OR decision = $2)"
            " ORDER BY decided_at DESC, action_id LIMIT $1",
            limit,
            decision,
        )
