"""Each replica reads every cytokine topic and keeps a live tally per region, dropping expired ones."""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from immune_core.cells.cytokine import CYTOKINE_TYPES, Cytokine, cytokine_topic
from immune_core.lymphnodes.regions import region_of
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.processing.dlq import INVALID_EVENT, DeadLetter
from immune_core.transport.bus import Bus

log = get_logger(__name__)
CYTOKINE_TOPICS = tuple(cytokine_topic(t) for t in CYTOKINE_TYPES)


class CytokineTally:
    """Live cytokines per region; "live" is judged on the wall clock (emitted_at + ttl_s)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._live: dict[str, deque[tuple[float, str]]] = defaultdict(deque)  # region -> (expires_at, type)

    def add(self, cytokine: Cytokine, now: float) -> bool:
        expires_at = cytokine.expires_at.timestamp()
        if expires_at <= now:
            self._metrics.cytokines.labels(type=cytokine.type, outcome="expired").inc()
            return False
        region = region_of(cytokine.antigen_type, cytokine.antigen)
        self._live[region].append((expires_at, cytokine.type))
        self._metrics.cytokines.labels(type=cytokine.type, outcome="live").inc()
        return True

    def snapshot(self, now: float) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for region, entries in list(self._live.items()):
            kept = deque(entry for entry in entries if entry[0] > now)
            if not kept:
                del self._live[region]
                continue
            self._live[region] = kept
            result[region] = dict(Counter(kind for _, kind in kept))
        return result


async def run_cytokine_feed(
    bus: Bus,
    tally: CytokineTally,
    *,
    on_read: Callable[[list[Cytokine]], object] | None = None,
    dead_letter: Callable[[DeadLetter], Awaitable[None]] | None = None,
) -> None:
    """Read every cytokine topic: the lymph nodes' tally, and (``on_read``) the engines' adaptive cells,
    which recruit and activate on them. A message that is not a valid cytokine goes to the dead-letter
    path (``immunis.dlq``, reason ``invalid_event``) and the feed goes on."""
    consumer = bus.consumer(CYTOKINE_TOPICS, group_id=None, from_latest=True)
    await consumer.start()
    try:
        while True:
            read: list[Cytokine] = []
            for message in await consumer.poll(500, timeout_s=1.0):
                try:
                    cytokine = Cytokine.model_validate_json(message.value)
                except ValidationError as exc:
                    log.warning("cytokine_unreadable", topic=message.topic, offset=message.offset)
                    if dead_letter is not None:
                        first = exc.errors()[0]["msg"]
                        detail = f"not a valid cytokine: {exc.error_count()} errors, first: {first}"
                        await dead_letter(
                            DeadLetter(
                                message.topic,
                                message.partition,
                                message.offset,
                                INVALID_EVENT,
                                detail,
                                message.value,
                            )
                        )
                    continue
                if tally.add(cytokine, time.time()):
                    read.append(cytokine)
            if read and on_read is not None:
                on_read(read)
    finally:
        await consumer.stop()
