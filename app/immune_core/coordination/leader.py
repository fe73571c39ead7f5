"""Leader election: keep trying to hold the lease; while held, run the singleton duties.

Each duty gets the fencing token it was started under and passes it to every write (``fenced``), so
correctness never depends on this process noticing in time that it lost the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from immune_core.coordination.lease import DatabaseLease, StaleFencingToken
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.storage.database import StoreUnavailable

log = get_logger(__name__)


class SingletonDuty(Protocol):
    name: str
    interval_s: float

    async def tick(self, token: int) -> None:
        """One unit of singleton work, written under ``token``; raises ``StaleFencingToken`` if fenced off."""


class LeaderElector:
    def __init__(
        self,
        lease: DatabaseLease,
        *,
        instance_id: str,
        ttl_s: float,
        renew_interval_s: float,
        metrics: Metrics,
        live: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._lease = lease
        # Campaign only while this replica's colour is live (coordination/color.py); None: always.
        self._live = live
        self.instance_id = instance_id
        # A restarted process must not be mistaken for its previous life: the holder is per process.
        self.holder = f"{instance_id}/{uuid.uuid4().hex[:12]}"
        self._ttl = ttl_s
        self._renew = renew_interval_s
        self._duties: list[SingletonDuty] = []
        self._metrics = metrics
        self.token: int | None = None
        self._held_since_renewal = 0.0
        self._duty_tasks: list[asyncio.Task[None]] = []
        self._task: asyncio.Task[None] | None = None

    def add_duties(self, duties: list[SingletonDuty]) -> None:
        """Duties are built after the elector because they write under its per-process holder id."""
        self._duties.extend(duties)

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name="leader-election")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._step_down()
        if self.token is not None or self._held_since_renewal:
            with contextlib.suppress(StoreUnavailable, OSError):
                await self._lease.release(self.holder)

    async def _campaign(self) -> None:
        while True:
            if self._live is not None and not await self._live():
                await self._stand_aside()
                await asyncio.sleep(self._renew)
                continue
            try:
                token = await self._lease.acquire(self.holder, self._ttl)
                renewed_at = time.monotonic()
            except (StoreUnavailable, OSError) as exc:
                log.warning("lease_unreachable", error=type(exc).__name__)
                token, renewed_at = self.token, self._held_since_renewal
                # Without a renewal for a whole TTL another replica may already lead: stop acting.
                if token is not None and time.monotonic() - renewed_at > self._ttl:
                    token = None
            if token != self.token:
                await self._step_down()
                if token is not None:
                    self._step_up(token)
            self._held_since_renewal = renewed_at if token is not None else 0.0
            await asyncio.sleep(self._renew)

    async def _stand_aside(self) -> None:
        """An idle colour holds no lease: step down and release it so the live colour takes over at once."""
        held = self.token is not None or self._held_since_renewal
        await self._step_down()
        self._held_since_renewal = 0.0
        if held:
            with contextlib.suppress(StoreUnavailable, OSError):
                await self._lease.release(self.holder)

    def _step_up(self, token: int) -> None:
        self.token = token
        self._metrics.leader.set(1)
        self._metrics.fencing_token.set(token)
        log.info("leader_elected", holder=self.holder, term=token)
        self._duty_tasks = [
            asyncio.create_task(self._run_duty(duty, token), name=f"duty-{duty.name}")
            for duty in self._duties
        ]

    async def _step_down(self) -> None:
        if self.token is not None:
            log.info("leader_stepped_down", holder=self.holder, term=self.token)
        self.token = None
        self._metrics.leader.set(0)
        tasks, self._duty_tasks = self._duty_tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_duty(self, duty: SingletonDuty, token: int) -> None:
        while True:
            try:
                await duty.tick(token)
            except StaleFencingToken:
                self._metrics.singleton_rejected.inc()
                log.warning("singleton_write_fenced_off", duty=duty.name, term=token)
            except (StoreUnavailable, OSError) as exc:
                log.warning("singleton_duty_store_unavailable", duty=duty.name, error=type(exc).__name__)
            except Exception:
                # A bug in one tick must not kill the duty for the rest of the term.
                log.exception("singleton_duty_failed", duty=duty.name)
            await asyncio.sleep(duty.interval_s)
