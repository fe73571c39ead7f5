"""The service's data-access rule holds in the tree: routers hold no SQL, each feature's reads are in its
``queries.py``, and the shared write-path SQL lives with storage (docs/service.md, "Module map")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import immune_core

PACKAGE = Path(immune_core.__file__).resolve().parent
# The service writes SQL keywords in capitals; a statement keyword with what SQL puts after it.
SQL = re.compile(r"\b(SELECT\s.*?\bFROM\b|INSERT INTO|UPDATE \w+ SET|DELETE FROM)", re.DOTALL)


def sql_strings(source: str) -> list[str]:
    """String constants (docstrings included) of a module that read as SQL statements."""
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)
    ]


def connection_calls(source: str) -> list[str]:
    """Calls of a database connection's or handle's methods (``.fetch*``, ``.execute*``, ``.session``)."""
    names = {"fetch", "fetchrow", "fetchval", "execute", "executemany", "session", "transaction"}
    return [
        node.func.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
    ]


def test_the_detector_finds_sql_and_connection_use() -> None:
    # Bad case: the shape a router had before its reads moved out.
    before = (
        "async def f(runtime):\n"
        "    async with runtime.database.session() as conn:\n"
        "        return await conn.fetch('SELECT node_id, payload FROM lymphnodes WHERE node_id = $1', 1)\n"
    )
    assert sql_strings(before)
    assert sorted(connection_calls(before)) == ["fetch", "session"]
    # Good case: prose that mentions the words is not SQL, and a call through queries opens nothing here.
    assert not sql_strings("'select the newest threats from storage, then update the page'")
    assert connection_calls("async def f(database):\n    return await queries.all_nodes(database)\n") == []


def test_routers_hold_no_sql_and_features_have_their_queries() -> None:
    routers = sorted(PACKAGE.glob("*/router.py"))
    assert len(routers) >= 8, routers  # the glob found the routers: an empty list proves nothing
    offenders = {
        str(r.relative_to(PACKAGE)): sql_strings(r.read_text()) for r in routers if sql_strings(r.read_text())
    }
    assert offenders == {}
    for feature in ("ingestion", "lymphnodes", "memory", "threats", "homeostasis"):
        assert sql_strings((PACKAGE / feature / "queries.py").read_text()), feature
    # The agents' one write goes through the engine's own SQL (shared with replay), not a copy of it.
    assert connection_calls((PACKAGE / "agents" / "queries.py").read_text()) == ["transaction"]


def test_routers_open_no_connections_themselves() -> None:
    routers = sorted(PACKAGE.glob("*/router.py"))
    assert routers
    for router in routers:
        assert connection_calls(router.read_text()) == [], router.relative_to(PACKAGE)


def test_the_shared_repository_lives_with_storage() -> None:
    assert (PACKAGE / "storage" / "repository.py").is_file()
    assert not (PACKAGE / "ingestion" / "repository.py").exists()
