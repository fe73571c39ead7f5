"""Hormones over Redis: ``SET`` keeps the latest value, ``PUBLISH`` tells the other replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from immune_core.hormones.signal import HormoneListener, HormonesUnavailable
from immune_core.observability.logging import get_logger

log = get_logger(__name__)
_CHANNEL_PREFIX = "immunis:hormone:"
_KEY_PREFIX = "immunis:hormone-latest:"


class RedisHormones:
    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self._client = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=10
        )
        self._listeners: list[HormoneListener] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe_forever(), name="hormones-subscriber")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def publish(self, name: str, value: dict[str, Any]) -> None:
        payload = json.dumps(value, separators=(",", ":"))
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(_KEY_PREFIX + name, payload)
                pipe.publish(_CHANNEL_PREFIX + name, payload)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise HormonesUnavailable(f"redis: {type(exc).__name__}") from exc

    async def latest(self, name: str) -> dict[str, Any] | None:
        try:
            raw = await self._client.get(_KEY_PREFIX + name)
        except (RedisError, OSError) as exc:
            raise HormonesUnavailable(f"redis: {type(exc).__name__}") from exc
        return json.loads(raw) if raw else None

    def listen(self, listener: HormoneListener) -> None:
        self._listeners.append(listener)

    async def healthy(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def _subscribe_forever(self) -> None:
        # Reconnects after a Redis outage of any length, backing off (1 s doubling to 15 s) while it
        # lasts; the service keeps running degraded meanwhile. Commands on ``self._client`` need no such
        # loop: redis-py's pool opens a new connection for the next command after a failed one.
        delay = 1.0
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.psubscribe(_CHANNEL_PREFIX + "*")
                    delay = 1.0  # subscribed again: the next outage starts from a short wait
                    async for message in pubsub.listen():
                        if message.get("type") != "pmessage":
                            continue
                        await self._deliver(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("hormone_subscription_lost", error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def _deliver(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        try:
            value = json.loads(message["data"])
        except (ValueError, TypeError):
            log.warning("hormone_message_unreadable", channel=channel)
            return
        name = channel.removeprefix(_CHANNEL_PREFIX)
        for listener in self._listeners:
            await listener(name, value)
