"""One detection consumer over a real store, as the adaptive-layer tests build it: an engine host with the
given cells and a consumer on the in-process bus (group "g", batches of up to 1000 messages)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.observability.metrics import Metrics
from immune_core.processing.consumer import DetectionConsumer
from immune_core.processing.counters import IntakeCounters
from immune_core.processing.engine_host import EngineHost
from immune_core.storage.database import Database
from immune_core.transport.inprocess import InProcessBus

from tests.app.support import flow


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


def vertical_scan(scanner: str, start: datetime, ports: int = 40) -> list[dict[str, Any]]:
    """A fast scan of one host from `scanner`, one rejected flow every 300 ms from `start`: the
    neutrophil finds it (il8), the helper T licenses, B cells learn."""
    return [
        flow(
            src_ip=scanner,
            dst_ip="10.0.0.5",
            dst_port=1000 + i,
            at=start + timedelta(milliseconds=300 * i),
            conn_state="rejected",
            bytes_in=0,
            bytes_out=60,
        )
        for i in range(ports)
    ]
