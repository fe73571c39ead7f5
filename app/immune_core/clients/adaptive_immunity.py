"""Adaptive Immunity service client: affinity of candidate receptors for an antigen's feature vector.

Used by B-cell affinity maturation (``immune_core.adaptive.maturation``: it implements
``AffinityScorer``): after a primary response, the service's affinities re-rank the kept detector and
the best antibodies of the CLONALG pool. Fallback ``internal_affinity``: the detector the core's own
maturation kept stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from immune_core.clients.base import DependencyFailure, ServiceClient

FALLBACK = "internal_affinity"


class AdaptiveImmunityClient(ServiceClient):
    """The Adaptive Immunity service: affinities of candidate detectors to an antigen (fallback
    ``internal_affinity``: the core computes them itself)."""

    service = "adaptive_immunity"

    async def affinities(
        self, antigen: Sequence[float], candidates: Sequence[Sequence[float]]
    ) -> list[float] | None:
        """One affinity in [0, 1] per candidate (same order), or None (fallback taken). An answer with
        another number of affinities than candidates breaks the contract like a malformed body."""

        def one_per_candidate(raw: Any) -> str | None:
            got = len(raw["affinities"])
            return None if got == len(candidates) else f"{got} affinities for {len(candidates)} candidates"

        try:
            raw = await self.call(
                "affinity",
                body={"antigen": list(antigen), "candidates": [list(c) for c in candidates]},
                check=one_per_candidate,
            )
        except DependencyFailure:
            self.fallback(FALLBACK)
            return None
        return [float(v) for v in raw["affinities"]]
