"""Reads of the stored immunological memory (``memory_signatures``) for the API."""

from __future__ import annotations

from immune_core.storage.database import Database, Row


async def signatures(
    database: Database, *, category: str | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    """A page of signatures, most recently seen first, and the total number stored (all categories).

    ``category`` ``None`` means any. Raises ``StoreUnavailable``.
    """
    async with database.session() as conn:
        rows = await conn.fetch(
            "SELECT signature, category, antigen_type, antigen, first_seen, last_seen, occurrences,"
            " max_severity_rank FROM memory_signatures WHERE (CAST($3 AS TEXT) IS NULL OR category = $3)"
            " ORDER BY last_seen DESC LIMIT $1 OFFSET $2",
            limit,
            offset,
            category,
        )
        total = await conn.fetchval("SELECT count(*) FROM memory_signatures")
    return rows, int(total or 0)
