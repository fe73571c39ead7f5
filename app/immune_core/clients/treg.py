"""Treg service client: how much the homeostatic controller should damp its threat score.

Fallback ``no_suppression``: the score is used as computed. For a security tool an unavailable
regulator must never silence detection, so no answer means no damping.
"""

from __future__ import annotations

from dataclasses import dataclass

from immune_core.clients.base import DependencyFailure, ServiceClient

FALLBACK = "no_suppression"


@dataclass(frozen=True)
class Suppression:
    """How much to damp the threat score (``suppression`` in [0, 1]) and why."""

    suppression: float  # in [0, 1]
    reason: str


class TregClient(ServiceClient):
    """The Treg service (fallback ``no_suppression``: no answer never silences detection)."""

    service = "treg"

    async def suppression(self, level: int, score: float, threats: dict[str, int]) -> Suppression | None:
        """Treg's suppression for the current ``level``/``score`` and threats by severity in the window."""
        try:
            raw = await self.call(
                "suppression", body={"level": level, "score": round(score, 6), "threats": threats}
            )
        except DependencyFailure:
            self.fallback(FALLBACK)
            return None
        return Suppression(float(raw["suppression"]), str(raw["reason"]))
