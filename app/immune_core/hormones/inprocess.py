"""Hormones within one process (embedded mode)."""

from __future__ import annotations

from typing import Any

from immune_core.hormones.signal import HormoneListener


class InProcessHormones:
    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Any]] = {}
        self._listeners: list[HormoneListener] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, name: str, value: dict[str, Any]) -> None:
        self._latest[name] = value
        for listener in self._listeners:
            await listener(name, value)

    async def latest(self, name: str) -> dict[str, Any] | None:
        return self._latest.get(name)

    def listen(self, listener: HormoneListener) -> None:
        self._listeners.append(listener)

    async def healthy(self) -> bool:
        return True
