"""What a cell reports after observing an event: findings, dendritic-cell signals and cytokines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple, TypeAlias
from uuid import UUID

from immune_core.cells.cytokine import Cytokine
from immune_core.detection.threat import AntigenType, ThreatCategory, ThreatSeverity

# The Dendritic Cell Algorithm's input signal categories (Greensmith & Aickelin):
# PAMP = a known signature of attack, danger = something abnormal, safe = evidence of normal function.
SignalKind: TypeAlias = Literal["pamp", "danger", "safe"]


# Antigen and Signal are immutable named tuples rather than frozen dataclasses: cells build several per
# event, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) made their
# construction the engine's largest single cost; a named tuple is built ~4x faster and stays immutable
# and hashable by value (docs/performance.md).
class Antigen(NamedTuple):
    type: AntigenType
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


class Signal(NamedTuple):
    """One input signal for the dendritic cells, bound to the antigen it concerns."""

    antigen: Antigen
    kind: SignalKind
    strength: float  # in [0, 1]; the dendritic cell scales it
    source_cell: str
    reason: str
    at: datetime
    event_id: UUID
    category: ThreatCategory | None = None  # what a PAMP/danger signal suggests the antigen is doing
    host_id: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A cell's own conclusion that an antigen is doing something hostile."""

    antigen: Antigen
    category: ThreatCategory
    severity: ThreatSeverity
    confidence: float
    reason: str
    at: datetime
    event_ids: tuple[UUID, ...]
    cell_id: str
    cell_type: str
    host_id: str | None = None
    mcav: float | None = None


@dataclass(slots=True)
class CellOutput:
    findings: list[Finding] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    cytokines: list[Cytokine] = field(default_factory=list)

    def extend(self, other: CellOutput) -> None:
        self.findings.extend(other.findings)
        self.signals.extend(other.signals)
        self.cytokines.extend(other.cytokines)


NO_OUTPUT_REASON = "nothing to report"
