"""Valid events of each kind as the API receives them (JSON mappings), for the events tests."""

from __future__ import annotations

import uuid
from typing import Any


def flow_dict(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "2b0e5b4c-8f0e-4a51-9d1e-3d1b8c1f7a00",
        "timestamp": "2026-01-05T09:00:00.250Z",
        "kind": "network_flow",
        "host_id": "ws-01",
        "src_ip": "10.20.1.11",
        "dst_ip": "2001:DB8::1",
        "dst_port": 443,
        "protocol": "tcp",
        "bytes_in": 1200,
        "bytes_out": 300,
    }
    event.update(overrides)
    return event


def endpoint_dict(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "timestamp": "2026-01-05T09:00:00+01:00",
        "kind": "endpoint",
        "host_id": "srv-db-1",
        "process": "postgres",
        "parent_process": "systemd",
        "user": "postgres",
        "action": "process_start",
        "signed": True,
    }
    event.update(overrides)
    return event


def intel_dict(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "timestamp": "2026-01-05T09:00:00Z",
        "kind": "intel",
        "indicator": "185.220.101.4",
        "indicator_type": "ip",
        "severity": "high",
        "source": "partner-cert",
        "expires_at": "2026-01-06T09:00:00Z",
    }
    event.update(overrides)
    return event
