"""CLONALG clonal selection and affinity maturation, and the memory detectors it produces.

Reference: L. N. de Castro and F. J. Von Zuben, "Learning and Optimization Using the Clonal Selection
Principle", IEEE Transactions on Evolutionary Computation 6(3), 2002, pp. 239-251 (the pattern
recognition version of CLONALG, section III-A). For one antigen ``Ag`` (a feature vector in [0, 1]^d)
and a repertoire ``Ab`` of ``N`` antibodies (vectors of the same space):

1. affinity of every antibody to ``Ag``: here ``1 / (1 + ||Ab_i - Ag||_2)`` (in (0, 1]; the paper uses
   Hamming or Euclidean distance -- higher affinity = closer);
2. select the ``n`` highest-affinity antibodies;
3. clone them, the antibody of rank ``i`` into ``round(beta * N / i)`` clones (eq. 2: better antibodies
   get more clones);
4. hypermutate each clone with a rate inversely proportional to its parent's affinity:
   ``alpha = exp(-rho * f)`` with ``f`` the affinity normalised to [0, 1] (the paper's eq. 3); here the
   mutation is Gaussian noise of standard deviation ``alpha * sigma`` per component, clipped to [0, 1];
5. re-select: the highest-affinity clone is the memory candidate; selected antibodies are replaced by
   their best clone when it is better;
6. receptor editing: the ``d`` lowest-affinity antibodies are replaced by random newcomers.

``generations`` repeats 1-6. Randomness comes from a generator seeded by the caller (the antigen's
signature), so two replicas given the same antigen learn the same detector.

A *memory detector* is the memory candidate kept with a category (what the antigen was confirmed to be)
and a radius: it recognises any antigen within ``radius`` (Euclidean, feature units). Detectors are
kept per antigen type in ``MemoryBank``, which answers nearest-detector queries with one vectorised
distance computation.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from immune_core.detection.threat import SEVERITY_RANK, ThreatCategory, ThreatSeverity

FloatArray = npt.NDArray[np.float64]
_SMALL_BANK = 32  # detectors below which a nearest-detector lookup is plain Python


@dataclass(frozen=True, slots=True)
class ClonalgParams:
    repertoire_size: int = 20  # N
    select: int = 5  # n
    clone_factor: float = 1.0  # beta
    mutation_decay: float = 2.0  # rho
    mutation_sigma: float = 0.1  # sigma, feature units
    replace: int = 2  # d
    generations: int = 8


@dataclass(frozen=True, slots=True)
class ClonalResult:
    """What one clonal selection produced: the memory candidate and how many clones it took."""

    best: FloatArray
    affinity: float
    clones: int
    generations: int


def affinity(distance: float) -> float:
    return 1.0 / (1.0 + distance)


def seeded_rng(*parts: str) -> np.random.Generator:
    """A generator seeded by text (CRC-32 of the parts): same input, same clones, on every replica."""
    return np.random.default_rng(zlib.crc32("|".join(parts).encode("utf-8")))


def clonal_selection(
    antigen: FloatArray, repertoire: FloatArray, rng: np.random.Generator, params: ClonalgParams
) -> tuple[ClonalResult, FloatArray]:
    """Run CLONALG on one antigen; returns the result and the updated repertoire (same shape).

    ``antigen`` has shape (d,), ``repertoire`` (N, d), values in [0, 1]. Raises ValueError on shape
    mismatch or an empty repertoire.
    """
    if repertoire.ndim != 2 or repertoire.shape[0] == 0 or repertoire.shape[1] != antigen.shape[0]:
        raise ValueError(
            f"repertoire of shape {repertoire.shape} does not fit an antigen of shape {antigen.shape}"
        )
    pool = repertoire.copy()
    n_total = pool.shape[0]
    n_select = min(params.select, n_total)
    clones_made = 0
    best = pool[0]
    best_affinity = 0.0
    for _ in range(params.generations):
        distances = np.linalg.norm(pool - antigen, axis=1)
        affinities = 1.0 / (1.0 + distances)
        order = np.argsort(-affinities, kind="stable")[:n_select]
        top = float(affinities[order[0]])
        for rank, index in enumerate(order, start=1):
            count = max(1, round(params.clone_factor * n_total / rank))
            normalised = float(affinities[index]) / top if top > 0 else 0.0
            rate = math.exp(-params.mutation_decay * normalised)
            clones = pool[index] + rng.normal(0.0, rate * params.mutation_sigma, size=(count, pool.shape[1]))
            np.clip(clones, 0.0, 1.0, out=clones)
            clones_made += count
            clone_affinities = 1.0 / (1.0 + np.linalg.norm(clones - antigen, axis=1))
            winner = int(np.argmax(clone_affinities))
            if clone_affinities[winner] > affinities[index]:
                pool[index] = clones[winner]
                affinities[index] = clone_affinities[winner]
        # Receptor editing: the worst antibodies make room for random newcomers (diversity).
        worst = np.argsort(affinities, kind="stable")[: min(params.replace, max(0, n_total - n_select))]
        pool[worst] = rng.random((len(worst), pool.shape[1]))
        affinities[worst] = 1.0 / (1.0 + np.linalg.norm(pool[worst] - antigen, axis=1))
        leader = int(np.argmax(affinities))
        if affinities[leader] >= best_affinity:
            best, best_affinity = pool[leader].copy(), float(affinities[leader])
    return ClonalResult(best, best_affinity, clones_made, params.generations), pool


@dataclass(slots=True)
class MemoryDetector:
    """A memory B cell: recognises antigens of ``antigen_type`` whose vector in feature space ``space``
    lies within ``radius`` of ``features``."""

    detector_id: str
    antigen_type: str
    space: str
    category: ThreatCategory
    features: FloatArray
    radius: float
    stimulations: int
    severity: ThreatSeverity
    origin: str  # signature of the antigen that first stimulated it
    created_at: datetime
    updated_at: datetime
    base_radius: float = 0.0  # the radius before tolerance shrank it
    tolerated: bool = False  # tolerance shrank it
    fresh: bool = True  # not yet censored by a regulatory T cell

    def as_record(self) -> dict[str, object]:
        return {
            "detector_id": self.detector_id,
            "antigen_type": self.antigen_type,
            "space": self.space,
            "category": self.category,
            "features": [round(float(x), 6) for x in self.features],
            "radius": round(self.radius, 6),
            "stimulations": self.stimulations,
            "severity": self.severity,
            "origin": self.origin,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(slots=True)
class MemoryBank:
    """Memory detectors of one feature space; nearest-detector lookups are one numpy pass."""

    space: str
    dimensions: int
    capacity: int = 256
    detectors: list[MemoryDetector] = field(default_factory=list)
    _matrix: FloatArray | None = None
    _radii: FloatArray | None = None
    _rows: list[list[float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.detectors)

    def _refresh(self) -> None:
        if self.detectors:
            self._matrix = np.vstack([d.features for d in self.detectors])
            self._radii = np.array([d.radius for d in self.detectors])
            self._rows = [d.features.tolist() for d in self.detectors]
        else:
            self._matrix = self._radii = None
            self._rows = []

    def add(self, detector: MemoryDetector) -> None:
        for index, known in enumerate(self.detectors):
            if known.detector_id == detector.detector_id:
                self.detectors[index] = detector
                break
        else:
            self.detectors.append(detector)
            if len(self.detectors) > self.capacity:
                # The least stimulated, then oldest, memory fades first.
                weakest = min(self.detectors, key=lambda d: (d.stimulations, d.updated_at))
                self.detectors.remove(weakest)
        self._refresh()

    def remove(self, detector_id: str) -> None:
        self.detectors = [d for d in self.detectors if d.detector_id != detector_id]
        self._refresh()

    def changed(self) -> None:
        """Call after editing a detector's features or radius in place."""
        self._refresh()

    def nearest(self, vector: FloatArray, scale: float = 1.0) -> tuple[MemoryDetector, float] | None:
        """The detector whose scaled radius covers ``vector`` with the most room, and its distance."""
        if self._matrix is None or self._radii is None:
            return None
        if len(self.detectors) <= _SMALL_BANK:
            # numpy's per-call overhead exceeds the arithmetic for a handful of short vectors.
            point = vector.tolist()
            best: tuple[MemoryDetector, float] | None = None
            room = 0.0
            for detector, row in zip(self.detectors, self._rows, strict=True):
                distance = math.sqrt(sum((a - b) * (a - b) for a, b in zip(row, point, strict=True)))
                margin = detector.radius * scale - distance
                if margin >= 0 and (best is None or margin > room):
                    best, room = (detector, distance), margin
            return best
        distances = np.linalg.norm(self._matrix - vector, axis=1)
        margins = self._radii * scale - distances
        index = int(np.argmax(margins))
        if margins[index] < 0:
            return None
        return self.detectors[index], float(distances[index])

    def closest(self, vector: FloatArray, category: str) -> tuple[MemoryDetector, float] | None:
        """The nearest detector of ``category`` whatever its radius."""
        best: tuple[MemoryDetector, float] | None = None
        for detector in self.detectors:
            if detector.category != category:
                continue
            distance = float(np.linalg.norm(detector.features - vector))
            if best is None or distance < best[1]:
                best = (detector, distance)
        return best


def stronger(a: ThreatSeverity, b: ThreatSeverity) -> ThreatSeverity:
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b
