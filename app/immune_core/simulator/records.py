"""Labelled events and the builders the traffic generators share."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    """One generated event (JSON-ready dict, valid against its schema) and its ground truth.

    ``label`` names the attack the event belongs to (None for benign traffic) and ``antigen`` the
    antigen the detection layer should blame for it, as ``<antigen_type>:<value>``.
    """

    event: dict[str, Any]
    label: str | None = None
    antigen: str | None = None

    @property
    def timestamp(self) -> str:
        return str(self.event["timestamp"])


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventFactory:
    """Builds schema-valid event dicts whose ids come from the scenario's seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _envelope(self, kind: str, at: datetime) -> dict[str, Any]:
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "timestamp": rfc3339(at),
            "kind": kind,
            "schema_version": 1,
        }

    def flow(
        self,
        at: datetime,
        host_id: str,
        src_ip: str,
        dst_ip: str,
        dst_port: int,
        bytes_out: int,
        bytes_in: int,
        protocol: str = "tcp",
        conn_state: str = "established",
        domain: str | None = None,
    ) -> dict[str, Any]:
        event = self._envelope("network_flow", at)
        event.update(
            host_id=host_id,
            src_ip=src_ip,
            src_port=self.rng.randint(32768, 60999),
            dst_ip=dst_ip,
            dst_port=dst_port,
            protocol=protocol,
            bytes_in=max(0, int(bytes_in)),
            bytes_out=max(0, int(bytes_out)),
            packets=max(1, int((bytes_in + bytes_out) / 900) + 2),
            duration_ms=self.rng.randint(1, 30_000)
            if conn_state == "established"
            else self.rng.randint(0, 50),
            conn_state=conn_state,
        )
        if domain:
            event["domain"] = domain
        return event

    def endpoint(
        self,
        at: datetime,
        host_id: str,
        process: str,
        parent_process: str,
        user: str,
        action: str,
        signed: bool,
        sha256: str | None = None,
        remote_ip: str | None = None,
        command_line: str | None = None,
        domain: str | None = None,
    ) -> dict[str, Any]:
        event = self._envelope("endpoint", at)
        event.update(
            host_id=host_id,
            process=process,
            parent_process=parent_process,
            user=user,
            action=action,
            signed=signed,
            pid=self.rng.randint(300, 65000),
        )
        if sha256:
            event["sha256"] = sha256
        if remote_ip:
            event["remote_ip"] = remote_ip
        if command_line:
            event["command_line"] = command_line
        if domain:
            event["domain"] = domain
        return event

    def intel(
        self,
        at: datetime,
        indicator: str,
        indicator_type: str,
        severity: str,
        source: str,
        lifetime: timedelta,
        description: str | None = None,
    ) -> dict[str, Any]:
        event = self._envelope("intel", at)
        event.update(
            indicator=indicator,
            indicator_type=indicator_type,
            severity=severity,
            source=source,
            expires_at=rfc3339(at + lifetime),
        )
        if description:
            event["description"] = description
        return event

    def sha256(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"
