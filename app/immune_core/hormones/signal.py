"""What every hormone backend offers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

HormoneListener = Callable[[str, dict[str, Any]], Awaitable[None]]


class HormonesUnavailable(RuntimeError):
    """The hormone channel is down; callers carry on degraded."""


class Hormones(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, name: str, value: dict[str, Any]) -> None:
        """Broadcast ``value`` and keep it as the latest for late joiners; raises ``HormonesUnavailable``."""

    async def latest(self, name: str) -> dict[str, Any] | None: ...

    def listen(self, listener: HormoneListener) -> None:
        """Call ``listener(name, value)`` for every hormone published by any replica."""

    async def healthy(self) -> bool: ...
