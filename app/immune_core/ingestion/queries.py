"""Reads behind ``GET /api/v1/stats``: what the database holds, across every replica."""

from __future__ import annotations

from immune_core.storage.database import Database, Row


async def stored_counts(database: Database) -> Row | None:
    """Row counts of the stored tables, read in one statement (one snapshot).

    Keys: ``stored``, ``processed`` (events detection has run on), ``threats``, ``dead_letters``,
    ``outbox`` (messages not yet relayed), ``acknowledged`` (sum over replicas). ``None`` only if the
    database answered no row, which an aggregate SELECT never does. Raises ``StoreUnavailable``.
    """
    async with database.session() as conn:
        return await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events) AS stored,"
            " (SELECT count(*) FROM events WHERE processed_at IS NOT NULL) AS processed,"
            " (SELECT count(*) FROM threats) AS threats,"
            " (SELECT count(*) FROM dead_letters) AS dead_letters,"
            " (SELECT count(*) FROM outbox) AS outbox,"
            # One statement, one snapshot: acknowledged and stored are compared by the chaos gate.
            " (SELECT COALESCE(SUM(acknowledged), 0) FROM event_acknowledgements) AS acknowledged"
        )
