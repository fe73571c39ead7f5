"""Holding work until the database is back (background loops never give up or crash)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from immune_core.observability.logging import get_logger
from immune_core.storage.database import StoreUnavailable

log = get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


async def retry_while_store_down(call: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    delay = 0.2
    while True:
        try:
            return await call(*args, **kwargs)
        except StoreUnavailable:
            log.warning("waiting_for_database", operation=getattr(call, "__name__", "?"), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
