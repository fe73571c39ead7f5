"""Reads of stored threats for the API: a filtered page (newest first) and one by id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from immune_core.storage.database import Database, Row


@dataclass(frozen=True)
class ThreatFilter:
    """Conditions a listed threat meets; ``None`` means any. Ranks per ``detection.threat.SEVERITY_RANK``."""

    severity: str | None = None
    min_severity_rank: int | None = None
    category: str | None = None
    antigen: str | None = None
    host_id: str | None = None
    stored_since: float | None = None  # Unix seconds, inclusive
    before_seq: int | None = None  # the cursor: only threats stored before this one


async def page(database: Database, where: ThreatFilter, limit: int) -> list[Row]:
    """Up to ``limit`` threats matching ``where``, newest (highest ``seq``) first.

    Rows hold ``seq``, ``stored_at`` and the JSON ``payload``. Raises ``StoreUnavailable``.
    """
    clauses: list[str] = []
    args: list[Any] = []

    def condition(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${len(args)}"))

    if where.severity is not None:
        condition("severity = ?", where.severity)
    if where.min_severity_rank is not None:
        condition("severity_rank >= ?", where.min_severity_rank)
    if where.category is not None:
        condition("category = ?", where.category)
    if where.antigen is not None:
        condition("antigen = ?", where.antigen)
    if where.host_id is not None:
        condition("host_id = ?", where.host_id)
    if where.stored_since is not None:
        condition("stored_at >= ?", where.stored_since)
    if where.before_seq is not None:
        condition("seq < ?", where.before_seq)
    args.append(limit)
    # Only fixed column conditions with numbered placeholders are joined; values travel as parameters.
    sql = (
        "SELECT seq, stored_at, payload FROM threats"  # noqa: S608  # nosec B608
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + f" ORDER BY seq DESC LIMIT ${len(args)}"
    )
    async with database.session() as conn:
        return await conn.fetch(sql, *args)


async def by_id(database: Database, threat_id: str) -> Row | None:
    """One stored threat by its id (UUID text), or ``None``. Raises ``StoreUnavailable``."""
    async with database.session() as conn:
        return await conn.fetchrow(
            "SELECT seq, stored_at, payload FROM threats WHERE threat_id = $1", threat_id
        )
