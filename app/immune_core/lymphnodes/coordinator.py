"""The lymph-node coordinator (a singleton duty on the leader).

Every tick it aggregates the threats stored in the window by region, adds the live cytokine tally,
and writes one row per lymph node under its fencing token. A node whose region reaches the activation
threshold (or saw a critical threat) is *activated*; activation and resolution are alerts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from immune_core.coordination.lease import DatabaseLease
from immune_core.detection.threat import SEVERITIES
from immune_core.homeostasis.controller import record_singleton_run
from immune_core.lymphnodes.cytokines import CytokineTally
from immune_core.lymphnodes.regions import region_of
from immune_core.storage import repository as repo
from immune_core.storage.database import Database

_CRITICAL = 3


@dataclass
class RegionSummary:
    threat_count: int = 0
    max_severity_rank: int = -1
    categories: dict[str, int] = field(default_factory=dict)
    antigens: set[str] = field(default_factory=set)

    def add(self, category: str, antigen: str, rank: int) -> None:
        self.threat_count += 1
        self.max_severity_rank = max(self.max_severity_rank, rank)
        self.categories[category] = self.categories.get(category, 0) + 1
        self.antigens.add(antigen)


class LymphNodeCoordinator:
    name = "lymphnodes"

    def __init__(
        self,
        *,
        database: Database,
        lease: DatabaseLease,
        tally: CytokineTally,
        holder: str,
        interval_s: float,
        window_s: float,
        activation_threshold: int = 3,
    ) -> None:
        self._db = database
        self._lease = lease
        self._tally = tally
        self._holder = holder
        self.interval_s = interval_s
        self._window = window_s
        self._threshold = activation_threshold

    async def tick(self, token: int) -> None:
        now = time.time()
        cytokines = self._tally.snapshot(now)
        async with self._lease.fenced(token) as conn:
            rows = await conn.fetch(
                "SELECT category, antigen_type, antigen, host_id, severity_rank FROM threats"
                " WHERE stored_at >= $1",
                now - self._window,
            )
            regions: dict[str, RegionSummary] = defaultdict(RegionSummary)
            for r in rows:
                region = region_of(str(r["antigen_type"]), str(r["antigen"]), r["host_id"])
                regions[region].add(str(r["category"]), str(r["antigen"]), int(r["severity_rank"]))
            previous = {
                str(r["node_id"]): bool(r["activated"])
                for r in await conn.fetch("SELECT node_id, activated FROM lymphnodes")
            }
            alerts: list[repo.OutboxMessage] = []
            for region in sorted(set(regions) | set(cytokines) | set(previous)):
                summary = regions.get(region, RegionSummary())
                activated = summary.threat_count >= self._threshold or summary.max_severity_rank >= _CRITICAL
                payload = {
                    "categories": summary.categories,
                    "antigens": sorted(summary.antigens)[:50],
                    "cytokines": cytokines.get(region, {}),
                    "window_s": self._window,
                }
                await conn.execute(
                    "INSERT INTO lymphnodes (node_id, region, activated, threat_count, max_severity_rank,"
                    " payload, updated_at, token) VALUES ($1, $1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (node_id) DO UPDATE SET activated = excluded.activated,"
                    " threat_count = excluded.threat_count, max_severity_rank = excluded.max_severity_rank,"
                    " payload = excluded.payload, updated_at = excluded.updated_at, token = excluded.token",
                    region,
                    activated,
                    summary.threat_count,
                    summary.max_severity_rank,
                    json.dumps(payload, sort_keys=True),
                    now,
                    token,
                )
                if activated != previous.get(region, False):
                    alerts.append(self._alert(region, activated, summary, now, token))
            await repo.enqueue(conn, alerts)
            await record_singleton_run(
                conn, self.name, token, self._holder, f"regions={len(regions)} alerts={len(alerts)}"
            )

    @staticmethod
    def _alert(
        region: str, activated: bool, summary: RegionSummary, now: float, token: int
    ) -> repo.OutboxMessage:
        body: dict[str, Any] = {
            "alert_id": str(uuid.uuid4()),
            "type": "lymphnode_activated" if activated else "lymphnode_resolved",
            "node_id": region,
            "threat_count": summary.threat_count,
            "max_severity": SEVERITIES[summary.max_severity_rank] if summary.max_severity_rank >= 0 else None,
            "at": now,
            "term": token,
        }
        return repo.OutboxMessage(repo.ALERTS_TOPIC, region, repo.dumps(body))
