"""One detection consumer over a real store, as the adaptive-layer tests build it: an engine host with the
given cells and a consumer on the in-process bus (group "g", batches of up to 1000 messages)."""

from __future__ import annotations

from typing import Any

from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.observability.metrics import Metrics
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.storage.database import Database
from immune_core.transport.inprocess import InProcessBus


def engine_host(database: Database, cells: list[CellSpec]) -> EngineHost:
    """An engine host whose every engine runs `cells`."""
    return EngineHost(database, Metrics(), template=DetectionEngine(DetectionConfig(cells=cells)))


def detection_consumer(database: Database, host: EngineHost, **options: Any) -> DetectionConsumer:
    """A consumer of `host` on an in-process bus; `options` go to DetectionConsumer (validator, affinity)."""
    return DetectionConsumer(
        database=database,
        bus=InProcessBus(),
        engine=host,
        metrics=Metrics(),
        counters=IntakeCounters(),
        group_id="g",
        batch_size=1000,
        **options,
    )
