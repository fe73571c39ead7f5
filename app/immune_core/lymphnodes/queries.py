"""Reads of the ``lymphnodes`` table (written by the leader's coordinator) for the API."""

from __future__ import annotations

from immune_core.storage.database import Database, Row


async def all_nodes(database: Database) -> list[Row]:
    """Every lymph node, activated first, then by threat count (descending). Raises ``StoreUnavailable``."""
    async with database.session() as conn:
        return await conn.fetch(
            "SELECT node_id, activated, threat_count, max_severity_rank, payload, updated_at, token"
            " FROM lymphnodes ORDER BY activated DESC, threat_count DESC"
        )


async def node(database: Database, node_id: str) -> Row | None:
    """One lymph node by its region id (``net:<CIDR>`` or ``hosts:<role>``), or ``None``.

    Raises ``StoreUnavailable``.
    """
    async with database.session() as conn:
        return await conn.fetchrow(
            "SELECT node_id, activated, threat_count, max_severity_rank, payload, updated_at, token"
            " FROM lymphnodes WHERE node_id = $1",
            node_id,
        )
