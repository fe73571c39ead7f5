"""Durable storage: one SQL store over PostgreSQL (asyncpg) or SQLite (aiosqlite)."""
