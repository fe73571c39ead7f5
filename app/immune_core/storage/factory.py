"""Chooses the database backend once, at start-up, from the settings."""

from __future__ import annotations

from immune_core.settings import Settings
from immune_core.storage.database import Database
from immune_core.storage.postgres import PostgresDatabase
from immune_core.storage.sqlite import SqliteDatabase


def open_database(settings: Settings) -> Database:
    if settings.database_url is not None:
        return PostgresDatabase(
            settings.database_url.get_secret_value(),
            pool_size=settings.db_pool_size,
            timeout=settings.db_timeout_s,
        )
    return SqliteDatabase(settings.sqlite_path)
