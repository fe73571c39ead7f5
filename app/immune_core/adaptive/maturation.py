"""The hook through which affinity maturation consults an external scorer (the Adaptive Immunity service).

The B cells mature a memory detector with CLONALG inside the engine (``adaptive.clonalg``; L. N. de
Castro and F. J. Von Zuben, IEEE TEC 6(3), 2002), where affinity is ``1 / (1 + distance)``. The
platform's Adaptive Immunity service scores affinity its own way (``clients/contracts/
adaptive_immunity.v1.yaml``: one affinity in [0, 1] per candidate receptor). After each primary response
the B cell queues an ``AffinityQuery``: the antigen's vector and up to ``MAX_CANDIDATES`` candidates --
the detector it kept first, then the best other antibodies of the final CLONALG pool. The consumer asks
the scorer (``DetectionConsumer(affinity=...)``) and ``choose`` ranks the candidates by the mean of the
two affinities (the core's and the service's: the service complements the internal maturation, it does
not replace it). When another candidate wins, the detector moves to it (same id): it is stored with
the batch and loaded into every engine, where the regulatory T cells censor it again before it
recognises anything. Asked once per event (held across a retried commit).

Fallback ``internal_affinity``: no scorer configured, or it failed (down, slow, 5xx, malformed, an
answer of another length than the candidates) -- the internal choice stands, the batch goes on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from immune_core.adaptive.clonalg import FloatArray, MemoryDetector, affinity

MAX_CANDIDATES = 5


@dataclass(frozen=True, slots=True)
class AffinityQuery:
    """What a primary response asks: which of ``candidates`` (vectors of ``space``, each in [0, 1]; the
    first is the detector ``detector_id`` as kept) binds ``antigen`` best."""

    detector_id: str
    space: str
    antigen: tuple[float, ...]
    candidates: tuple[tuple[float, ...], ...]


def query_for(detector: MemoryDetector, antigen: FloatArray, pool: FloatArray) -> AffinityQuery:
    """The query of one primary response: the kept detector, then the pool's best other antibodies.

    ``antigen`` has shape (d,), ``pool`` (N, d) (the repertoire CLONALG returned).
    """
    kept = tuple(round(float(x), 6) for x in detector.features)
    order = np.argsort(np.linalg.norm(pool - antigen, axis=1), kind="stable")
    candidates = [kept]
    for index in order:
        row = tuple(round(float(x), 6) for x in pool[int(index)])
        if row not in candidates:
            candidates.append(row)
        if len(candidates) == MAX_CANDIDATES:
            break
    return AffinityQuery(
        detector_id=detector.detector_id,
        space=detector.space,
        antigen=tuple(round(float(x), 6) for x in antigen),
        candidates=tuple(candidates),
    )


def choose(query: AffinityQuery, external: Sequence[float] | None) -> int:
    """Index of the candidate with the highest mean of internal and external affinity (0: keep).

    ``external`` is the scorer's answer, one affinity in [0, 1] per candidate; None, another length, or
    a value that is not a finite number in [0, 1] is no answer (0: the internal choice stands). A tie
    keeps the earlier candidate, so the kept detector wins ties.
    """
    if external is None or len(external) != len(query.candidates):
        return 0
    if not all(isinstance(a, float | int) and math.isfinite(a) and 0.0 <= a <= 1.0 for a in external):
        return 0
    best, best_score = 0, -1.0
    for index, (candidate, outside) in enumerate(zip(query.candidates, external, strict=True)):
        inside = affinity(math.dist(candidate, query.antigen))
        score = (inside + float(outside)) / 2.0
        if score > best_score:
            best, best_score = index, score
    return best


def moved(detector: MemoryDetector, features: Sequence[float], now: datetime) -> MemoryDetector:
    """A copy of ``detector`` centred on ``features`` (same id, radius and meaning), to be re-censored."""
    return replace(
        detector,
        features=np.clip(np.asarray(features, dtype=np.float64), 0.0, 1.0),
        updated_at=now,
        fresh=True,
    )


@runtime_checkable
class AffinityScorer(Protocol):
    """An external affinity scorer (the Adaptive Immunity service client implements it)."""

    async def affinities(
        self, antigen: Sequence[float], candidates: Sequence[Sequence[float]]
    ) -> list[float] | None:
        """One affinity in [0, 1] per candidate, or None when it could not answer (fallback taken)."""
        ...
