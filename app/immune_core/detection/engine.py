"""The detection engine: runs the innate cells over each event and turns findings into threats.

``process(event)`` is synchronous and, given its inputs, deterministic: cells run in a fixed order and
time comes from event timestamps, bounded by the wall clock (the streaming terms, as in the Dataflow
model, Akidau et al., VLDB 2015, and Apache Flink's documentation):

* **event time** is an event's own ``timestamp``;
* the **watermark** is the engine's event-time clock: the latest event time seen, but never more than
  ``max_clock_skew_s`` ahead of the wall clock (so one event stamped 2100, or a sensor whose clock runs
  fast, cannot move it so far that every later event falls outside the windows), and never backwards;
* an event is **late** when its event time is behind the watermark. Within ``allowed_lateness_s`` it is
  evaluated at its own event time (its windows are those around it, as if it had arrived in order);
  beyond that its windows have closed: it is evaluated at the watermark and counted as ``late_events``
  (what it shows on its own, e.g. a known-bad address, is still found).

Cells get the evaluation time as ``CellContext.now``; cool-downs, intel expiry, cytokine expiry and
``Threat.detected_at`` run on the watermark. Per event:

1. an intel item is added to the shared ``IntelStore`` (the macrophages' knowledge);
2. stage-0 cells (neutrophil, macrophage, NK) observe the event and report findings, dendritic-cell
   signals and cytokines;
3. stage-1 cells (dendritic) read those signals and may report findings of their own;
4. findings about the same (category, antigen) are merged into one ``Threat`` whose evidence lists each
   contributing cell's reason; confidence is the noisy-OR across independent cells, a lineage of clones
   counting once (``threat.merge_confidence``); severity the highest. Signals and cytokines of a clone
   duplicate its lineage's and are dropped;
5. a threat whose signature was raised less than ``cooldown_s`` ago (event time) is suppressed.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.adaptive.maturation import AffinityQuery
from immune_core.adaptive.recall import RecallQuery
from immune_core.adaptive.state import AdaptiveState, ClonalExpansion, SelfSample
from immune_core.cells.base import AnyEvent, Cell, CellConfigError, CellContext, PopulationError
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import CellOutput, Finding
from immune_core.detection.intel import IntelStore
from immune_core.detection.threat import (
    Evidence,
    Threat,
    derive_threat_id,
    max_severity,
    merge_confidence,
    threat_signature,
)
from immune_core.events.models import DEFAULT_MAX_CLOCK_SKEW_S, IntelItem, wall_clock
from immune_core.responses.proposals import Proposal


class CellSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    params: dict[str, Any] = Field(default_factory=dict)


def _default_cells() -> list[CellSpec]:
    return [
        CellSpec(type="neutrophil"),
        CellSpec(type="macrophage"),
        CellSpec(type="nk_cell"),
        CellSpec(type="dendritic"),
    ]


class DetectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cooldown_s: float = Field(
        default=300.0, ge=0, description="Same signature is not raised again within this event time."
    )
    cells: list[CellSpec] = Field(default_factory=_default_cells)
    # Each cell costs one pass per event and its own learned state (a clone copies its original's).
    max_cells: int = Field(default=16, ge=1, le=256, description="Cells in the population, all types.")
    max_cells_per_type: int = Field(default=4, ge=1, le=64, description="Cells of one type.")
    required_cell_types: tuple[str, ...] = Field(
        default=("neutrophil", "macrophage", "nk_cell", "dendritic"),
        description="Types detection depends on: the last one is removed only when forced.",
    )
    max_intel_items: int = Field(default=100_000, ge=1)
    max_cooldown_entries: int = Field(default=100_000, ge=1)
    max_pending_cytokines: int = Field(
        default=10_000, ge=1, description="Oldest cytokines are dropped when nobody drains them."
    )
    max_clock_skew_s: float = Field(
        default=DEFAULT_MAX_CLOCK_SKEW_S,
        ge=0,
        le=86_400,
        description="The watermark never runs further ahead of the wall clock than this (seconds).",
    )
    allowed_lateness_s: float = Field(
        default=600.0,
        ge=0,
        le=86_400,
        description="Events up to this far behind the watermark are evaluated at their own event time.",
    )

    @model_validator(mode="after")
    def _population_fits_caps(self) -> DetectionConfig:
        per_type = Counter(spec.type for spec in self.cells)
        if len(self.cells) > self.max_cells or max(per_type.values(), default=0) > self.max_cells_per_type:
            raise ValueError("the initial cells exceed max_cells or max_cells_per_type")
        return self


_log = logging.getLogger(__name__)
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


class DetectionEngine:
    def __init__(
        self, config: DetectionConfig | None = None, *, wall_clock: Callable[[], datetime] = wall_clock
    ) -> None:
        self.config = config or DetectionConfig()
        self.intel = IntelStore(self.config.max_intel_items)
        self._cells: list[Cell[Any]] = []
        # The population by stage, in population order; rebuilt after a change (``_population_changed``).
        self._staged: list[tuple[int, list[Cell[Any]]]] | None = None
        self._next_cell_number: dict[str, int] = {}
        self._wall_clock = wall_clock
        self._max_skew = timedelta(seconds=self.config.max_clock_skew_s)
        self._allowed_lateness = timedelta(seconds=self.config.allowed_lateness_s)
        self._clock = _EPOCH  # the watermark
        self._last_raised: OrderedDict[str, datetime] = OrderedDict()
        self._pending_cytokines: list[Cytokine] = []
        self._pending_proposals: list[Proposal] = []
        self.adaptive = AdaptiveState()
        self.counters: dict[str, int] = {
            "events": 0,
            "threats": 0,
            "suppressed": 0,
            "cytokines_dropped": 0,
            "cell_errors": 0,
            "late_events": 0,
            "future_events": 0,
            "proposals_dropped": 0,
        }
        for spec in self.config.cells:
            self.add_cell(spec.type, spec.params)

    # -- cell population ----------------------------------------------------------------------
    @property
    def cells(self) -> list[Cell[Any]]:
        return list(self._cells)

    @property
    def clock(self) -> datetime:
        """The watermark (see the module docstring)."""
        return self._clock

    @property
    def watermark(self) -> datetime:
        return self._clock

    def _advance_watermark(self, event_time: datetime) -> datetime:
        """Move the watermark for ``event_time``; returns the time the event is evaluated at."""
        if event_time > self._clock:
            ceiling = self._wall_clock() + self._max_skew
            if event_time > ceiling:
                # Only reachable by events that skipped parse_event's bound (code, replays of old data).
                self.counters["future_events"] += 1
            self._clock = max(self._clock, min(event_time, ceiling))
        if event_time > self._clock:
            return self._clock
        if self._clock - event_time > self._allowed_lateness:
            self.counters["late_events"] += 1
            return self._clock
        return event_time

    def _new_cell_id(self, cell_type: str) -> str:
        number = self._next_cell_number.get(cell_type, 0) + 1
        self._next_cell_number[cell_type] = number
        return f"{cell_type}-{number}"

    def count_of(self, cell_type: str) -> int:
        return sum(1 for cell in self._cells if cell.cell_type == cell_type)

    def check_room_for(self, cell_type: str) -> None:
        """Raises ``PopulationError`` (``population_full``) when one more ``cell_type`` would pass a cap."""
        if len(self._cells) >= self.config.max_cells:
            raise PopulationError(
                "population_full",
                f"the population holds {len(self._cells)} cells, the limit (max_cells); delete one first",
            )
        if self.count_of(cell_type) >= self.config.max_cells_per_type:
            raise PopulationError(
                "population_full",
                f"{self.count_of(cell_type)} {cell_type} cells is the limit per type (max_cells_per_type)",
            )

    def check_removable(self, cell_id: str, *, force: bool = False) -> None:
        """Raises ``PopulationError`` (``last_of_kind``) for the last cell of a required type, unforced."""
        cell = self.get_cell(cell_id)
        if force or cell.cell_type not in self.config.required_cell_types:
            return
        if self.count_of(cell.cell_type) <= 1:
            raise PopulationError(
                "last_of_kind",
                f"{cell_id} is the last {cell.cell_type} cell and detection depends on it; create another "
                "first, or force the removal (admin, ?force=true) knowing the service stops being ready",
            )

    def missing_types(self) -> list[str]:
        """Required cell types with no cell: detection is partly blind while this is not empty."""
        present = {cell.cell_type for cell in self._cells}
        return [name for name in self.config.required_cell_types if name not in present]

    def add_cell(self, cell_type: str, params: Mapping[str, Any] | None = None) -> Cell[Any]:
        Cell.validate_params(cell_type, params)  # fail before consuming an id
        self.check_room_for(cell_type)
        cell = Cell.create(cell_type, params, self._new_cell_id(cell_type))
        self._cells.append(cell)
        self._staged = None
        return cell

    def get_cell(self, cell_id: str) -> Cell[Any]:
        for cell in self._cells:
            if cell.cell_id == cell_id:
                return cell
        raise KeyError(cell_id)

    def remove_cell(self, cell_id: str, *, force: bool = False) -> None:
        self.check_removable(cell_id, force=force)
        self._cells.remove(self.get_cell(cell_id))
        self._staged = None

    def clone_cell(self, cell_id: str) -> Cell[Any]:
        original = self.get_cell(cell_id)
        self.check_room_for(original.cell_type)
        twin = original.clone(self._new_cell_id(original.cell_type))
        self._cells.append(twin)
        self._staged = None
        return twin

    def describe(self) -> list[dict[str, Any]]:
        return [cell.describe() for cell in self._cells]

    def known_intel(self) -> list[IntelItem]:
        return self.intel.live(self._clock)

    def drain_cytokines(self) -> list[Cytokine]:
        drained, self._pending_cytokines = self._pending_cytokines, []
        return [cytokine for cytokine in drained if not cytokine.is_expired(self._clock)]

    # -- adaptive layer ----------------------------------------------------------------------------
    def set_threat_level(self, level: int) -> None:
        """The homeostatic level (0 baseline .. 3 critical): adaptive cells' sensitivity and damping."""
        self.adaptive.threat_level = max(0, min(3, int(level)))

    def receive_cytokines(self, cytokines: Iterable[Cytokine]) -> int:
        """Cytokines read from the topics (other lanes, other replicas); returns how many were live and new.

        Judged against this engine's watermark (cytokines carry event time); ones already read (their
        own, coming back through the topic) are recognised by id and ignored.
        """
        return sum(self.adaptive.cytokines.add(cytokine, self._clock) for cytokine in cytokines)

    def load_memory(self, detectors: Iterable[MemoryDetector]) -> int:
        """Memory detectors learned elsewhere (stored, another replica, the Memory service)."""
        count = 0
        for detector in detectors:
            detector.fresh = True  # censored by this engine's regulatory T cells before its first match
            bank = self.adaptive.memory.get(detector.space)
            if bank is not None and bank.dimensions == detector.features.shape[0]:
                bank.add(detector)
                self.adaptive.memory_version += 1
                count += 1
        return count

    def load_self(self, samples: Iterable[SelfSample]) -> int:
        """Self samples learned before (the store, other lanes and replicas); returns how many were new."""
        return self.adaptive.load_self(samples)

    def drain_self(self) -> list[SelfSample]:
        """Self samples the regulatory T cells learned since the last drain (to persist)."""
        return self.adaptive.drain_self()

    def forget_memory(self, detector_ids: Iterable[str]) -> None:
        """Drop detectors (deleted by tolerance in another engine or replica)."""
        gone = set(detector_ids)
        for bank in self.adaptive.memory.values():
            if any(d.detector_id in gone for d in bank.detectors):
                bank.detectors = [d for d in bank.detectors if d.detector_id not in gone]
                bank.changed()

    def memory_detectors(self) -> list[MemoryDetector]:
        return [d for bank in self.adaptive.memory.values() for d in bank.detectors]

    def drain_recall_queries(self) -> list[RecallQuery]:
        """What the B cells want to ask an external memory (see ``adaptive.recall``)."""
        drained, self.adaptive.recall_queries = self.adaptive.recall_queries, []
        return drained

    def drain_affinity_queries(self) -> list[AffinityQuery]:
        """What the B cells want an external affinity scorer to rank (see ``adaptive.maturation``)."""
        drained, self.adaptive.affinity_queries = self.adaptive.affinity_queries, []
        return drained

    def drain_proposals(self) -> list[Proposal]:
        drained, self._pending_proposals = self._pending_proposals, []
        return drained

    def drain_adaptive(self) -> tuple[list[ClonalExpansion], list[MemoryDetector], list[str]]:
        """Clonal expansions to publish, memory detectors to persist, ids of detectors tolerance deleted."""
        return self.adaptive.drain()

    # -- processing ---------------------------------------------------------------------------
    def process(self, event: AnyEvent) -> list[Threat]:
        self.counters["events"] += 1
        evaluated_at = self._advance_watermark(event.timestamp)
        if isinstance(event, IntelItem):
            self.intel.add(event, self._clock)

        sensed = CellOutput()
        context = CellContext(now=evaluated_at, intel=self.intel)
        lineages: set[str] = set()
        if self._staged is None:
            by_stage: dict[int, list[Cell[Any]]] = {}
            for cell in self._cells:
                by_stage.setdefault(cell.stage, []).append(cell)
            self._staged = sorted(by_stage.items(), key=lambda item: item[0])
        adaptive: AdaptiveState | None = None
        for stage, cells in self._staged:
            staged = context
            emitted = len(sensed.cytokines)
            if stage != 0:
                if stage >= 2 and adaptive is None:
                    # The adaptive stages read the antigens' long-window profiles and every cytokine so far.
                    adaptive = self.adaptive
                    adaptive.begin_event(evaluated_at, adaptive.profiles.observe(event), sensed.cytokines)
                staged = CellContext(
                    now=evaluated_at,
                    intel=self.intel,
                    signals=tuple(sensed.signals),
                    findings=tuple(sensed.findings) if adaptive is not None else (),
                    cytokines=tuple(sensed.cytokines) if adaptive is not None else (),
                    adaptive=adaptive,
                )
            for cell in cells:
                # Inline, not helper methods: this loop runs once per cell and event and is the engine's
                # own hottest code (docs/performance.md). One faulty cell (a bug, or a cell type added
                # at run time) must not blind the others: its failure is counted and logged.
                try:
                    output = cell.observe(event, staged)
                except Exception:
                    output = self._observe_failed(cell, event)
                # A clone repeats its lineage's signals and cytokines: counting them again would make
                # dendritic cells and lymph nodes see one observation as several. Findings are kept for
                # the evidence list; their confidence is merged per lineage in ``_merge``.
                if cell.lineage in lineages:
                    sensed.findings.extend(output.findings)
                else:
                    lineages.add(cell.lineage)
                    if output.findings or output.signals or output.cytokines:
                        sensed.extend(output)
            if stage != 0 and adaptive is not None:
                for cytokine in sensed.cytokines[emitted:]:
                    adaptive.cytokines.add(cytokine, evaluated_at)

        self._queue_cytokines(sensed.cytokines)
        threats = self._raise_threats(sensed.findings)
        if threats and adaptive is not None:
            self._respond(threats, CellContext(now=evaluated_at, intel=self.intel, adaptive=adaptive))
        return threats

    def _respond(self, threats: list[Threat], context: CellContext) -> None:
        for cell in self._cells:
            try:
                proposals = cell.respond(threats, context)
            except Exception:
                cell.counters["errors"] += 1
                self.counters["cell_errors"] += 1
                _log.exception("cell %s failed responding to %d threats", cell.cell_id, len(threats))
                continue
            self._pending_proposals.extend(proposals)
        overflow = len(self._pending_proposals) - self.config.max_pending_cytokines
        if overflow > 0:
            del self._pending_proposals[:overflow]
            self.counters["proposals_dropped"] += overflow

    def _observe_failed(self, cell: Cell[Any], event: AnyEvent) -> CellOutput:
        """Counts and logs the exception being handled (called from an ``except`` block)."""
        cell.counters["errors"] += 1
        self.counters["cell_errors"] += 1
        _log.exception("cell %s failed on event %s", cell.cell_id, event.event_id)
        return CellOutput()

    def _queue_cytokines(self, cytokines: list[Cytokine]) -> None:
        self._pending_cytokines.extend(cytokines)
        overflow = len(self._pending_cytokines) - self.config.max_pending_cytokines
        if overflow > 0:
            del self._pending_cytokines[:overflow]
            self.counters["cytokines_dropped"] += overflow

    def _raise_threats(self, findings: list[Finding]) -> list[Threat]:
        grouped: dict[str, list[Finding]] = {}
        for finding in findings:
            key = threat_signature(finding.category, finding.antigen.type, finding.antigen.value)
            grouped.setdefault(key, []).append(finding)

        threats: list[Threat] = []
        for signature, group in grouped.items():
            if self._in_cooldown(signature):
                self.counters["suppressed"] += 1
                continue
            threats.append(self._merge(signature, group))
            self._remember_raised(signature)
        self.counters["threats"] += len(threats)
        return threats

    def _in_cooldown(self, signature: str) -> bool:
        last = self._last_raised.get(signature)
        return last is not None and self._clock - last < timedelta(seconds=self.config.cooldown_s)

    def _remember_raised(self, signature: str) -> None:
        self._last_raised[signature] = self._clock
        self._last_raised.move_to_end(signature)
        horizon = self._clock - timedelta(seconds=self.config.cooldown_s)
        while self._last_raised:
            oldest_signature, oldest = next(iter(self._last_raised.items()))
            if oldest >= horizon and len(self._last_raised) <= self.config.max_cooldown_entries:
                break
            del self._last_raised[oldest_signature]

    def _merge(self, signature: str, group: list[Finding]) -> Threat:
        first = group[0]
        event_ids = sorted({event_id for finding in group for event_id in finding.event_ids}, key=str)
        lineage_of = {cell.cell_id: cell.lineage for cell in self._cells}
        lineages = [lineage_of.get(finding.cell_id, finding.cell_id) for finding in group]
        mcavs = [finding.mcav for finding in group if finding.mcav is not None]
        if not mcavs:
            mcavs = [value for cell in self._cells if (value := cell.antigen_mcav(first.antigen)) is not None]
        cell_types = sorted({finding.cell_type for finding in group})
        return Threat(
            threat_id=derive_threat_id(signature, min(first.event_ids, key=str)),
            detected_at=self._clock,
            category=first.category,
            antigen_type=first.antigen.type,
            antigen=first.antigen.value,
            severity=max_severity([finding.severity for finding in group]),
            confidence=merge_confidence(
                zip(lineages, (finding.confidence for finding in group), strict=True)
            ),
            mcav=max(mcavs) if mcavs else None,
            cells=cell_types,
            evidence=[
                Evidence(cell=f.cell_id, cell_type=f.cell_type, lineage=lineage, reason=f.reason, at=f.at)
                for f, lineage in zip(group, lineages, strict=True)
            ],
            event_ids=event_ids,
            signature=signature,
            host_id=next((f.host_id for f in group if f.host_id), None),
        )


__all__ = ["CellConfigError", "CellSpec", "DetectionConfig", "DetectionEngine", "PopulationError"]
