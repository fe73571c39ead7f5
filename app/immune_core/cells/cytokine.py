"""Cytokines: short-lived messages cells send each other (published on ``immunis.cytokines.<type>``).

Biologically, cytokines are signalling proteins with a short half-life; here every cytokine carries a
time-to-live and consumers must drop it once ``is_expired(now)`` (event time or wall clock, whichever
the consumer runs on).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# il8: neutrophil chemotaxis (burst seen); tnf: macrophage activation (known pathogen matched);
# ifn_gamma: NK activation (missing self); il12: dendritic cell matured (danger context);
# il10: dendritic cell semi-mature (safe context, anti-inflammatory); il2: helper T cell activated on an
# antigen (T-cell growth factor: licenses B and cytotoxic T cells for it).
CytokineType: TypeAlias = Literal["il8", "tnf", "ifn_gamma", "il12", "il10", "il2"]
CYTOKINE_TYPES: tuple[CytokineType, ...] = ("il8", "tnf", "ifn_gamma", "il12", "il10", "il2")
DEFAULT_TTL_S: dict[CytokineType, float] = {
    "il8": 60.0,
    "tnf": 300.0,
    "ifn_gamma": 300.0,
    "il12": 600.0,
    "il10": 600.0,
    "il2": 1800.0,
}
_CYTOKINE_NAMESPACE = UUID("0c8e7d2a-3b1f-4e55-8a1c-6f0d2b9e7a13")


def cytokine_topic(cytokine_type: CytokineType) -> str:
    return f"immunis.cytokines.{cytokine_type}"


class Cytokine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cytokine_id: UUID
    type: CytokineType
    source_cell: str
    antigen: str
    antigen_type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    emitted_at: AwareDatetime
    ttl_s: float = Field(gt=0)

    @classmethod
    def emit(
        cls,
        cytokine_type: CytokineType,
        source_cell: str,
        antigen_type: str,
        antigen: str,
        emitted_at: datetime,
        payload: dict[str, Any] | None = None,
        ttl_s: float | None = None,
    ) -> Cytokine:
        # Derived id: the same cell emitting about the same antigen at the same instant is one cytokine.
        key = f"{cytokine_type}|{source_cell}|{antigen_type}|{antigen}|{emitted_at.isoformat()}"
        return cls(
            cytokine_id=uuid5(_CYTOKINE_NAMESPACE, key),
            type=cytokine_type,
            source_cell=source_cell,
            antigen=antigen,
            antigen_type=antigen_type,
            payload=payload or {},
            emitted_at=emitted_at,
            ttl_s=ttl_s if ttl_s is not None else DEFAULT_TTL_S[cytokine_type],
        )

    @property
    def expires_at(self) -> datetime:
        return self.emitted_at + timedelta(seconds=self.ttl_s)

    @property
    def topic(self) -> str:
        return cytokine_topic(self.type)

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at
