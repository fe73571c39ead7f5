"""After the cells: RTE triage and IP-intelligence enrichment of the threats they raised.

Runs in the detection consumer between detection and the commit of the batch (``DetectionConsumer``),
never in the synchronous engine: the engine stays deterministic and the calls are bounded by the
clients' timeouts, breakers and bulkheads. Nothing here can fail the batch: each client returns None
when it takes its fallback, and the threat is then stored as the cells raised it.

* **RTE** (reflex triage) is consulted about threats a neutrophil or NK cell contributed to (the fast,
  reflex-like detectors). ``escalate`` raises the severity to RTE's (never lowers it) and the confidence
  to RTE's if higher; ``dismiss`` lowers the severity to ``low`` (the threat is still stored: a dismissed
  detection stays visible to analysts); ``confirm`` changes nothing. Fallback ``keep_innate_verdict``.
* **IP intelligence** is consulted about threats whose antigen is a source address. A verdict is
  recorded as advice; a ``malicious`` one also adds its score to the confidence (noisy-OR with the
  cells', ``threat.merge_confidence``) and is fed to the core's intel as an ``intel`` event (indicator
  type ip, expiring with the verdict's ``ttl_s``), so every replica's macrophages flag that address's
  later traffic as a known-bad indicator. Fallback ``no_enrichment``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from immune_core.clients.ip_intel import IPIntelClient, Reputation
from immune_core.clients.rte import RTEClient
from immune_core.detection.threat import SEVERITY_RANK, Advice, Threat, ThreatSeverity, merge_confidence
from immune_core.observability.logging import get_logger

log = get_logger(__name__)
TRIAGED_CELL_TYPES = frozenset({"neutrophil", "nk_cell"})
_INTEL_NAMESPACE = UUID("0b8f3a52-61d4-4c1e-9d0b-7d2a5e9c4f13")
FeedIntel = Callable[[Sequence[object]], Awaitable[Any]]


class ThreatReview:
    """RTE triage and IP-intelligence enrichment of a batch's threats (module docstring); either client
    may be None (not configured), and ``feed_intel`` publishes the intel events a malicious verdict makes."""

    def __init__(
        self, *, rte: RTEClient | None, ip_intel: IPIntelClient | None, feed_intel: FeedIntel | None
    ) -> None:
        self._rte = rte
        self._ip_intel = ip_intel
        self._feed_intel = feed_intel
        self._fed_until: dict[str, float] = {}  # address -> wall-clock expiry of the intel fed for it

    @property
    def active(self) -> bool:
        """True when RTE or IP intelligence (or both) is configured; else ``review`` changes nothing."""
        return self._rte is not None or self._ip_intel is not None

    async def review(self, threats: Sequence[Threat]) -> list[Threat]:
        """The threats with RTE's and IP intelligence's advice applied; same order, same ids."""
        return list(await asyncio.gather(*(self._review_one(t) for t in threats)))

    async def _review_one(self, threat: Threat) -> Threat:
        severity: ThreatSeverity = threat.severity
        confidence = threat.confidence
        advice = list(threat.advice)
        if self._rte is not None and TRIAGED_CELL_TYPES & set(threat.cells):
            decision = await self._rte.triage(threat)
            if decision is not None:
                advice.append(Advice(service="rte", verdict=decision.decision, detail=decision.reason[:1000]))
                if (
                    decision.decision == "escalate"
                    and SEVERITY_RANK[decision.severity] > SEVERITY_RANK[severity]
                ):
                    severity = decision.severity
                    confidence = max(confidence, round(decision.confidence, 4))
                elif decision.decision == "dismiss":
                    severity = "low"
        if self._ip_intel is not None and threat.antigen_type == "source_ip":
            reputation = await self._ip_intel.reputation(threat.antigen)
            if reputation is not None:
                categories = ", ".join(reputation.categories) or "no categories"
                detail = f"score {reputation.score:.2f} ({categories}) from {reputation.source}"
                advice.append(Advice(service="ip_intel", verdict=reputation.reputation, detail=detail[:1000]))
                if reputation.reputation == "malicious":
                    confidence = merge_confidence([("cells", confidence), ("ip_intel", reputation.score)])
                    await self._feed(reputation)
        if advice == threat.advice:
            return threat
        return threat.model_copy(update={"severity": severity, "confidence": confidence, "advice": advice})

    async def _feed(self, reputation: Reputation) -> None:
        now = time.time()
        if self._feed_intel is None or reputation.ttl_s <= 0 or self._fed_until.get(reputation.ip, 0.0) > now:
            return
        at = datetime.now(UTC)
        # One id per address and hour: replicas feeding the same verdict store it once.
        bucket = int(now // 3600)
        item = {
            "event_id": str(uuid5(_INTEL_NAMESPACE, f"{reputation.ip}|{bucket}")),
            "timestamp": at.isoformat(),
            "kind": "intel",
            "indicator_type": "ip",
            "indicator": reputation.ip,
            "severity": "high" if reputation.score >= 0.9 else "medium",
            "source": f"ip-intel:{reputation.source}"[:255],
            "expires_at": (at + timedelta(seconds=reputation.ttl_s)).isoformat(),
            "description": f"IP intelligence: {reputation.reputation}, score {reputation.score:.2f}"[:500],
        }
        try:
            await self._feed_intel([item])
        except Exception as exc:  # storing intel is best effort: the threat itself is stored anyway
            log.warning("intel_feed_failed", indicator_type="ip", error_type=type(exc).__name__)
            return
        self._fed_until[reputation.ip] = now + reputation.ttl_s
        if len(self._fed_until) > 100_000:
            self._fed_until = {ip: t for ip, t in self._fed_until.items() if t > now}
