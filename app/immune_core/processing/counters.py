"""Per-process intake counters reported by ``/api/v1/stats``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IntakeCounters:
    accepted: int = 0  # events this process acknowledged that were new (HTTP 2xx or Kafka commit)
    duplicates: int = 0  # events acknowledged that were already stored (idempotent re-delivery)
    rejected: int = 0  # events refused as invalid over HTTP
    dead_lettered: int = 0  # Kafka messages sent to the DLQ by this process
