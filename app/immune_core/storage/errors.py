"""Which failures mean "the database refused these values" (as opposed to an outage or a bug).

A refused value (text PostgreSQL cannot store, a constraint, a number out of range) is the message's
fault: the consumer dead-letters that message and moves on. An outage is waited out
(``StoreUnavailable``). Anything else is a bug in the service: it is not blamed on the input (the
consumer task restarts, readiness reports the crash loop, and nothing is dead-lettered by mistake).
"""

from __future__ import annotations

import sqlite3

import asyncpg

from immune_core.storage.postgres import is_unavailable


def is_refused_value(exc: BaseException) -> bool:
    """True for a database error about the values of a statement, false for outages and other errors.

    PostgreSQL: any server error (``asyncpg.PostgresError``) that is not an outage class (SQLSTATE 22
    data exception, 23 integrity constraint, ...). SQLite: ``sqlite3.Error`` that is not an outage, and
    the ``ValueError``/``UnicodeEncodeError`` the driver raises for text it cannot encode.
    """
    if is_unavailable(exc):
        return False
    return isinstance(exc, asyncpg.PostgresError | sqlite3.Error | ValueError)
