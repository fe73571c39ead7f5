"""The hook through which B-cell recall consults an external memory (the Memory service).

The B cells recall from the memory detectors the engine holds (loaded from PostgreSQL). A
``MemoryRecall`` implementation (``immune_core.clients``: the Memory service) may add detectors the
platform learned elsewhere: ``EngineHost.recall_from`` asks it, for one antigen type and feature vector,
and loads what it returns into every engine. Without one configured, recall uses local memory only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

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


@runtime_checkable
class MemoryRecall(Protocol):
    """An external source of memory detectors (the Memory service implements it)."""

    name: str

    async def recall(self, query: RecallQuery) -> Sequence[RecalledDetector]:
        """Detectors near ``query``; raises any exception when unavailable (recall then stays local)."""
        ...
