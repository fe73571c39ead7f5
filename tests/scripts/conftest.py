"""Fixtures for the real Pulumi engine (tests/support/engine.py)."""

from __future__ import annotations

from tests.support.engine import engine_env, engine_project, passphrase  # noqa: F401  (fixtures)
