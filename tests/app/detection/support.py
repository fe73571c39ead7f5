"""Event builders the detection tests share."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from immune_core.simulator.records import EventFactory

SCANNER = "45.133.7.7"


def scan_flows(make: EventFactory, start: datetime, ports: int, src: str = SCANNER) -> list[dict[str, Any]]:
    """A port scan as raw events: `src` probes `ports` ports of one web server from `start`, one every
    0.5 s, each a rejected 60-byte flow (parse them with `parse_event`)."""
    return [
        make.flow(
            start + timedelta(seconds=i * 0.5),
            "srv-web-1",
            src,
            "10.20.2.10",
            1000 + i,
            60,
            0,
            conn_state="rejected",
        )
        for i in range(ports)
    ]
