"""HTTP requests in flight, so that background CPU work (detection) gives way to them.

The API and the detection consumer share one event loop. ``asyncio`` runs ready tasks round-robin, so
a request needing a few turns (read, authorise, store, answer) waits for a slice of detection at each
one; on a replica short of CPU that made ingest latency follow the detection load (which partitions it
consumes, how costly the cells are) rather than its own work. With ``Foreground`` the consumer, between
two slices, waits while requests are in flight (at most ``max_wait_s``, so detection always keeps a
share and the consumer's lag stays bounded by the load, not by the API's traffic).
"""

from __future__ import annotations

import asyncio


class Foreground:
    """Counts requests in flight (``enter``/``leave``, from ``api.middleware.ForegroundRequests``)."""

    def __init__(self) -> None:
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        return self._active

    def enter(self) -> None:
        self._active += 1
        self._idle.clear()

    def leave(self) -> None:
        self._active = max(0, self._active - 1)
        if self._active == 0:
            self._idle.set()

    async def give_way(self, max_wait_s: float) -> None:
        """One turn for whatever is ready, then wait until no request is in flight (``max_wait_s`` at most,
        seconds)."""
        await asyncio.sleep(0)
        if self._active == 0 or max_wait_s <= 0:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), max_wait_s)
        except TimeoutError:
            pass  # requests kept arriving: detection takes its next slice anyway
