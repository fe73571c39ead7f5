"""Tolerance: the self set learned in a training window, and negative selection of detectors against it.

Reference: S. Forrest, A. S. Perelson, L. Allen and R. Cherukuri, "Self-Nonself Discrimination in a
Computer", IEEE Symposium on Security and Privacy, 1994, pp. 202-212: detectors that match any *self*
string are censored (deleted) before they may detect. With real-valued features the match is a distance
and the detector a ball; following the V-detector idea (Z. Ji and D. Dasgupta, "Real-valued negative
selection algorithm with variable-sized detectors", GECCO 2004), a detector that overlaps self is first
*shrunk* to end ``self_radius`` short of the nearest self sample, and censored only when what is left is
smaller than ``min_radius``.

Self samples are the feature vectors of antigens observed during the training window (event time,
from the first event an engine sees) that no cell found hostile. Each antigen type keeps at most
``capacity`` distinct samples (rounded to 0.01), replaced at random once full (reservoir sampling,
J. S. Vitter, "Random sampling with a reservoir", ACM TOMS 11(1), 1985), so the set stays bounded and
representative of the whole window.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from immune_core.adaptive.clonalg import FloatArray, MemoryDetector


@dataclass(slots=True)
class SelfSet:
    """Self samples of one antigen type (vectors in [0, 1]^d)."""

    dimensions: int
    capacity: int = 4096
    seen: int = 0
    _keys: dict[tuple[float, ...], int] = field(default_factory=dict)
    _rows: list[tuple[float, ...]] = field(default_factory=list)
    _matrix: FloatArray | None = None
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(zlib.crc32(b"self-set")))

    def __len__(self) -> int:
        return len(self._rows)

    def learn(self, vector: tuple[float, ...]) -> bool:
        """Offer one self sample; True when the set changed (a new sample kept, or one replaced)."""
        key = tuple([round(x, 2) for x in vector])
        if key in self._keys:
            return False
        self.seen += 1
        if len(self._rows) < self.capacity:
            self._keys[key] = len(self._rows)
            self._rows.append(key)
        else:
            slot = int(self._rng.integers(0, self.seen))
            if slot >= self.capacity:
                return False
            del self._keys[self._rows[slot]]
            self._rows[slot] = key
            self._keys[key] = slot
        self._matrix = None
        return True

    def matrix(self) -> FloatArray | None:
        if self._matrix is None and self._rows:
            self._matrix = np.array(self._rows, dtype=np.float64)
        return self._matrix

    def nearest_distance(self, vector: FloatArray) -> float:
        """Distance to the nearest self sample (infinity when the set is empty)."""
        matrix = self.matrix()
        if matrix is None:
            return float("inf")
        return float(np.min(np.linalg.norm(matrix - vector, axis=1)))


def censor(detector: MemoryDetector, self_set: SelfSet, self_radius: float, min_radius: float) -> bool:
    """Negative selection of one detector: shrink it off self; False when it must be deleted.

    The detector's radius becomes ``min(base_radius, nearest_self - self_radius)``; it survives when that
    is at least ``min_radius``.
    """
    if detector.base_radius <= 0:
        detector.base_radius = detector.radius
    room = self_set.nearest_distance(detector.features) - self_radius
    allowed = min(detector.base_radius, room)
    detector.tolerated = allowed < detector.base_radius
    detector.radius = max(0.0, allowed)
    return detector.radius >= min_radius
