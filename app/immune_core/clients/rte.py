"""RTE (reflex triage engine) client: fast triage of what neutrophils and NK cells conclude.

Fallback ``keep_innate_verdict``: without an answer the cells' own severity and confidence stand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from immune_core.clients.base import DependencyFailure, ServiceClient
from immune_core.detection.threat import Threat, ThreatSeverity

FALLBACK = "keep_innate_verdict"


@dataclass(frozen=True)
class TriageDecision:
    """RTE's triage of one threat; ``confidence`` in [0, 1]."""

    decision: Literal["escalate", "confirm", "dismiss"]
    severity: ThreatSeverity
    confidence: float
    reason: str


class RTEClient(ServiceClient):
    """The RTE (reflex triage engine) service (fallback ``keep_innate_verdict``)."""

    service = "rte"

    async def triage(self, threat: Threat) -> TriageDecision | None:
        """RTE's decision on ``threat``, or None (fallback taken) when RTE gave no valid answer."""
        body = {
            "category": threat.category,
            "antigen_type": threat.antigen_type,
            "antigen": threat.antigen,
            "severity": threat.severity,
            "confidence": threat.confidence,
            "cells": threat.cells,
            "host_id": threat.host_id,
        }
        try:
            raw = await self.call("triage", body=body)
        except DependencyFailure:
            self.fallback(FALLBACK)
            return None
        return TriageDecision(raw["decision"], raw["severity"], float(raw["confidence"]), str(raw["reason"]))
