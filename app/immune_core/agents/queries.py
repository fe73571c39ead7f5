"""The agents API's one write: appending an op to the agent log every replica replays."""

from __future__ import annotations

from typing import Any

from immune_core.processing.engine_host import EngineHost
from immune_core.storage.database import Database


async def record_agent_op(database: Database, op: str, **fields: Any) -> int:
    """Append ``op`` (``create``/``clone``/``delete``) with ``fields`` to the agent log, in one transaction.

    Returns the op's sequence number (the log order replicas apply it in). Raises ``StoreUnavailable``.
    The SQL and its ordering lock are ``EngineHost.record_agent_op``'s, shared with the engine's replay.
    """
    async with database.transaction() as conn:
        return await EngineHost.record_agent_op(conn, database.lock_table, op, **fields)
