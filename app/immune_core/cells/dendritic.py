"""Dendritic cells: the deterministic Dendritic Cell Algorithm (dDCA) over the other cells' signals.

Reference: J. Greensmith and U. Aickelin, "The Deterministic Dendritic Cell Algorithm", ICARIS 2008,
LNCS 5132, pp. 291-302. The dDCA keeps two signal categories, danger D and safe S, and for every cell
accumulates ``csm = S + D`` (costimulation: how much the cell has sensed) and ``k = D - 2S`` (the
context: positive means anomalous). A cell migrates once its accumulated csm reaches its migration
threshold (its lifespan); it then presents every antigen it sampled in the *mature* context if
``k > 0``, else *semi-mature*, and resets. The mature context antigen value of an antigen is
``MCAV = mature presentations / all presentations``.

How this module maps that onto the service (every name below is a parameter):

* Signals come from the stage-0 cells, already bound to an antigen (source IP, host, or host/process):
  neutrophil and macrophage patterns are PAMPs, NK deviations and fan-out near a threshold are danger,
  ordinary completed behaviour is safe. Per event and antigen the strengths of each kind are summed.
* PAMP is folded in as a weighted danger, as in the original DCA's weight matrix where PAMPs weigh
  twice a danger signal: ``csm = P + D + S`` and ``k = D + pamp_weight*P - safe_weight*S`` with
  ``pamp_weight = 2``, ``safe_weight = 2`` (the dDCA's 2S).
* Each antigen has its own tissue: a population of ``population_size`` cells whose migration
  thresholds are evenly spaced over [``migration_min``, ``migration_max``] (different lifespans give
  the population several time scales, as in the dDCA). Every signal for the antigen reaches every cell
  of its population; each occurrence of the antigen is sampled by one cell, cyclically (dDCA's
  antigen sampling). A separate tissue per antigen keeps one attacker's danger from maturing the
  benign antigens seen at the same moment (the shared-tissue DCA's known false-positive source).
* MCAV is computed over the last ``mcav_window`` migrations of the antigen (so an antigen can
  recover), each weighted by the number of antigen samples it presented. A threat is raised when
  MCAV >= ``mcav_threshold`` and at least ``min_presentations`` samples were presented in the window;
  its category is the most frequent category among the antigen's PAMP/danger signals
  (``behaviour_anomaly`` when none was given).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from pydantic import Field, model_validator

from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen, CellOutput, Finding, Signal
from immune_core.detection.threat import ThreatCategory, ThreatSeverity

DC_STATE_BUDGET = 2_000_000  # dendritic cell states per dendritic cell: twice the default 10 x 100,000


class DendriticParams(CellParams):
    # Each antigen holds population_size cell states and mcav_window presentations, and every signal
    # for it visits all its cells: population_size * max_antigens is bounded (DC_STATE_BUDGET) too.
    population_size: int = Field(default=10, ge=1, le=100)
    migration_min: float = Field(default=4.0, gt=0, le=1_000)
    migration_max: float = Field(default=12.0, gt=0, le=1_000)
    pamp_weight: float = Field(default=2.0, ge=0, le=100)
    safe_weight: float = Field(default=2.0, ge=0, le=100)
    mcav_threshold: float = Field(default=0.6, gt=0, le=1)
    min_presentations: int = Field(default=6, ge=1, le=1_000)
    mcav_window: int = Field(default=20, ge=1, le=200)
    max_antigens: int = Field(default=100_000, ge=1, le=400_000)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> DendriticParams:
        if self.migration_max < self.migration_min:
            raise ValueError("migration_max must be >= migration_min")
        if self.population_size * self.max_antigens > DC_STATE_BUDGET:
            raise ValueError(
                f"population_size * max_antigens must be <= {DC_STATE_BUDGET:,} (cell states held in memory)"
            )
        return self

    def migration_thresholds(self) -> list[float]:
        if self.population_size == 1:
            return [self.migration_min]
        step = (self.migration_max - self.migration_min) / (self.population_size - 1)
        return [self.migration_min + step * index for index in range(self.population_size)]


@dataclass(slots=True)
class DendriticCellState:
    """One dendritic cell of an antigen's population."""

    migration_threshold: float
    csm: float = 0.0
    k: float = 0.0
    samples: int = 0


@dataclass(frozen=True, slots=True)
class Presentation:
    mature: bool
    samples: int
    at: datetime


@dataclass(slots=True)
class AntigenTissue:
    population: list[DendriticCellState]
    presentations: deque[Presentation]
    next_sampler: int = 0
    categories: Counter[ThreatCategory] = field(default_factory=Counter)
    recent_events: deque[UUID] = field(default_factory=lambda: deque(maxlen=20))
    host_id: str | None = None
    last_context_mature: bool | None = None

    def mcav(self) -> tuple[float, int]:
        total = sum(p.samples for p in self.presentations)
        mature = sum(p.samples for p in self.presentations if p.mature)
        return (mature / total if total else 0.0), total


def signal_totals(signals: list[Signal]) -> tuple[float, float, float]:
    """Summed strengths of the PAMP, danger and safe signals (one pass: this runs once per antigen and
    event; the sums are added in the signals' order, as three filtered sums would)."""
    pamp = danger = safe = 0.0
    for s in signals:
        if s.kind == "pamp":
            pamp += s.strength
        elif s.kind == "danger":
            danger += s.strength
        elif s.kind == "safe":
            safe += s.strength
    return pamp, danger, safe


class DendriticCell(Cell[DendriticParams]):
    cell_type = "dendritic"
    params_model = DendriticParams
    stage = 1
    description = "Deterministic Dendritic Cell Algorithm: fuses the other cells' signals per antigen (MCAV)."

    def __init__(self, params: DendriticParams, cell_id: str) -> None:
        super().__init__(params, cell_id)
        self._tissues: OrderedDict[Antigen, AntigenTissue] = OrderedDict()
        self._thresholds = params.migration_thresholds()

    def state_summary(self) -> dict[str, int]:
        return {"antigens": len(self._tissues)}

    def antigen_mcav(self, antigen: Antigen) -> float | None:
        tissue = self._tissues.get(antigen)
        if tissue is None or not tissue.presentations:
            return None
        return round(tissue.mcav()[0], 4)

    def tissue(self, antigen: Antigen) -> AntigenTissue | None:
        return self._tissues.get(antigen)

    def _tissue_for(self, antigen: Antigen) -> AntigenTissue:
        tissue = self._tissues.get(antigen)
        if tissue is None:
            tissue = AntigenTissue(
                population=[DendriticCellState(threshold) for threshold in self._thresholds],
                presentations=deque(maxlen=self.params.mcav_window),
            )
            self._tissues[antigen] = tissue
            while len(self._tissues) > self.params.max_antigens:
                self._tissues.popitem(last=False)
        else:
            self._tissues.move_to_end(antigen)
        return tissue

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        by_antigen: dict[Antigen, list[Signal]] = {}
        for signal in context.signals:
            by_antigen.setdefault(signal.antigen, []).append(signal)
        output = CellOutput()
        for antigen, signals in by_antigen.items():
            tissue = self._tissue_for(antigen)
            for signal in signals:
                if signal.category is not None and signal.kind != "safe":
                    tissue.categories[signal.category] += 1
                tissue.host_id = signal.host_id or tissue.host_id
            tissue.recent_events.append(event.event_id)
            migrated = self.expose(tissue, *signal_totals(signals), at=context.now)
            if migrated:
                self._after_migration(antigen, tissue, context.now, output)
        return output

    def expose(self, tissue: AntigenTissue, pamp: float, danger: float, safe: float, at: datetime) -> bool:
        """One antigen occurrence with its signals: sample, accumulate, migrate. True if any cell migrated."""
        p = self.params
        csm = pamp + danger + safe
        k = danger + p.pamp_weight * pamp - p.safe_weight * safe
        tissue.population[tissue.next_sampler].samples += 1
        tissue.next_sampler = (tissue.next_sampler + 1) % len(tissue.population)
        migrated = False
        for cell in tissue.population:
            cell.csm += csm
            cell.k += k
            if cell.csm >= cell.migration_threshold:
                if cell.samples:
                    tissue.presentations.append(Presentation(cell.k > 0, cell.samples, at))
                    migrated = True
                cell.csm = cell.k = 0.0
                cell.samples = 0
        return migrated

    def _after_migration(
        self, antigen: Antigen, tissue: AntigenTissue, now: datetime, output: CellOutput
    ) -> None:
        p = self.params
        mcav, presented = tissue.mcav()
        mature_now = tissue.presentations[-1].mature
        if mature_now != tissue.last_context_mature:
            tissue.last_context_mature = mature_now
            payload: dict[str, object] = {"mcav": round(mcav, 4), "presented": presented}
            if mature_now and tissue.categories:
                # What the danger suggests the antigen is doing: helper T cells license on it.
                payload["category"] = tissue.categories.most_common(1)[0][0]
            output.cytokines.append(
                Cytokine.emit(
                    "il12" if mature_now else "il10",
                    self.cell_id,
                    antigen.type,
                    antigen.value,
                    now,
                    payload,
                )
            )
        if mcav < p.mcav_threshold or presented < p.min_presentations:
            return
        category: ThreatCategory = (
            tissue.categories.most_common(1)[0][0] if tissue.categories else "behaviour_anomaly"
        )
        severity: ThreatSeverity = "high" if mcav >= 0.9 else "medium"
        mature = sum(pr.samples for pr in tissue.presentations if pr.mature)
        reason = (
            f"MCAV {mcav:.2f} for {antigen}: {mature} of {presented} antigen presentations in mature "
            f"context over the last {len(tissue.presentations)} migrations"
        )
        # Confidence grows with the evidence: full MCAV weight from twice the minimum presentations.
        confidence = round(mcav * min(1.0, presented / (2 * p.min_presentations)), 3)
        output.findings.append(
            Finding(
                antigen,
                category,
                severity,
                confidence,
                reason,
                now,
                tuple(tissue.recent_events),
                self.cell_id,
                self.cell_type,
                tissue.host_id,
                round(mcav, 4),
            )
        )
