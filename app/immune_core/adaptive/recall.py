"""The hook through which B-cell recall consults an external memory (the Memory service).

The B cells recall from the memory detectors the engine holds (loaded from PostgreSQL). A
``MemoryRecall`` implementation (``immune_core.clients``: the Memory service) may add detectors the
platform learned elsewhere: after each primary response (a threat the innate layer confirmed) the B cell
queues a ``RecallQuery`` (``DetectionEngine.drain_recall_queries``); the consumer asks the recall for
detectors near it (``DetectionConsumer(memory_recall=...)``), converts them (``as_memory_detector``),
stores them with the batch and loads them into every engine. Without one configured, or when it fails,
recall uses local memory only (the failure is logged; the batch goes on).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.adaptive.features import FEATURES_BY_SPACE
from immune_core.detection.threat import AntigenType, ThreatCategory

FeatureSpace: TypeAlias = Literal["source_ip", "upload", "channel", "process"]


class RecallQuery(BaseModel):
    """What the B cell asks: detectors of ``antigen_type`` near ``features`` (each in [0, 1]) of the
    feature space ``space`` (``immune_core.adaptive.features.FEATURES_BY_SPACE``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    antigen_type: AntigenType
    space: FeatureSpace
    features: tuple[float, ...] = Field(min_length=1, max_length=64)
    limit: int = Field(default=10, ge=1, le=100)


class RecalledDetector(BaseModel):
    """A memory detector: a point in the antigen type's feature space, its radius and what it means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector_id: str = Field(min_length=1, max_length=200)
    antigen_type: AntigenType
    space: FeatureSpace
    category: ThreatCategory
    features: tuple[float, ...] = Field(min_length=1, max_length=64)
    radius: float = Field(
        gt=0.0, le=10.0, description="Euclidean distance (feature units) it matches within."
    )
    stimulations: int = Field(default=1, ge=1)


def as_memory_detector(recalled: RecalledDetector, source: str, now: datetime) -> MemoryDetector | None:
    """The engine's form of a recalled detector, or None when its vector does not fit its space."""
    names = FEATURES_BY_SPACE.get(recalled.space)
    if names is None or len(recalled.features) != len(names):
        return None
    return MemoryDetector(
        detector_id=f"{source}:{recalled.detector_id}"[:200],
        antigen_type=recalled.antigen_type,
        space=recalled.space,
        category=recalled.category,
        features=np.clip(np.asarray(recalled.features, dtype=np.float64), 0.0, 1.0),
        radius=min(recalled.radius, 2.0),
        stimulations=recalled.stimulations,
        severity="medium",
        origin=f"{source}:{recalled.detector_id}"[:200],
        created_at=now,
        updated_at=now,
        base_radius=min(recalled.radius, 2.0),
    )


@runtime_checkable
class MemoryRecall(Protocol):
    """An external source of memory detectors (the Memory service implements it)."""

    name: str

    async def recall(self, query: RecallQuery) -> Sequence[RecalledDetector]:
        """Detectors near ``query``; raises any exception when unavailable (recall then stays local)."""
        ...
