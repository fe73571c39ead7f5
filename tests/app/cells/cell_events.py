"""Small builders of validated events for the cell tests (ids from a seeded generator)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from immune_core.cells.base import Cell, CellContext
from immune_core.cells.observation import CellOutput
from immune_core.detection.intel import IntelStore
from immune_core.events.models import EndpointEvent, IntelItem, NetworkFlow, parse_event
from immune_core.simulator.records import EventFactory

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_make = EventFactory(random.Random(7))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def flow(seconds: float, **overrides: Any) -> NetworkFlow:
    fields: dict[str, Any] = {
        "host_id": "h1",
        "src_ip": "10.0.0.5",
        "dst_ip": "10.0.0.9",
        "dst_port": 443,
        "bytes_out": 2_000,
        "bytes_in": 30_000,
        "conn_state": "established",
    }
    fields.update(overrides)
    event = _make.flow(at(seconds), **fields)
    parsed = parse_event(event)
    assert isinstance(parsed, NetworkFlow)
    return parsed


def endpoint(seconds: float, process: str, signed: bool = True, **overrides: Any) -> EndpointEvent:
    fields: dict[str, Any] = {
        "host_id": "srv-1",
        "parent_process": "systemd",
        "user": "root",
        "action": "process_start",
    }
    fields.update(overrides)
    parsed = parse_event(_make.endpoint(at(seconds), process=process, signed=signed, **fields))
    assert isinstance(parsed, EndpointEvent)
    return parsed


def intel(
    seconds: float, indicator: str, lifetime_s: float, indicator_type: str = "ip", severity: str = "high"
) -> IntelItem:
    parsed = parse_event(
        _make.intel(
            at(seconds), indicator, indicator_type, severity, "test-feed", timedelta(seconds=lifetime_s)
        )
    )
    assert isinstance(parsed, IntelItem)
    return parsed


def feed(cell: Cell[Any], events: list[Any], store: IntelStore | None = None) -> CellOutput:
    """Run events through one cell with the clock at each event; returns everything it reported."""
    store = store or IntelStore()
    total = CellOutput()
    for event in events:
        if isinstance(event, IntelItem):
            store.add(event, event.timestamp)
        total.extend(cell.observe(event, CellContext(now=event.timestamp, intel=store)))
    return total
