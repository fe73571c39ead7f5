"""B cell: clonal selection and affinity maturation (CLONALG) into memory detectors; secondary response.

Algorithm: L. N. de Castro and F. J. Von Zuben, "Learning and Optimization Using the Clonal Selection
Principle", IEEE Trans. Evolutionary Computation 6(3), 2002 (``adaptive.clonalg``). Antigens are the
long-window feature vectors of ``adaptive.features`` (one space per antigen type, components in [0, 1]).

* **Primary response** (needs T-cell help). When an antigen the current event touched holds a helper T
  cell's licence (``AdaptiveState.licences``) the cell runs CLONALG on its vector: a repertoire of
  ``repertoire_size`` antibodies (the memory detectors of that type and category first, then naive
  cells that already bind the antigen weakly -- Gaussian around it, std ``naive_spread`` -- seeded by the
  antigen's signature, so replicas agree), ``generations`` rounds of selection,
  cloning, hypermutation and receptor editing. The best clone becomes a memory detector of the licence's
  category with radius ``memory_radius`` -- or, when a detector of that category already recognises the
  antigen, that detector is re-stimulated and takes the clone's position if it is closer (affinity
  maturation). Each primary response is a ``ClonalExpansion`` (published on ``immunis.cloning.expanded``)
  and the detector is queued for persistence. An antigen gets one primary response per licence. A
  ``RecallQuery`` (antigen type, space, vector) is queued too: the service asks the external memory
  (``adaptive.recall.MemoryRecall``, the Memory service) for detectors near it and loads them; and an
  ``AffinityQuery`` (the detector and the pool's best antibodies): the service may have an external
  scorer (``adaptive.maturation.AffinityScorer``, the Adaptive Immunity service) re-rank them.
* **Secondary response** (no help needed: memory cells have a lower activation threshold). For every
  antigen the event touched with enough evidence (``min_source_flows`` flows from an address,
  ``min_host_observations`` outbound observations of a host, ``min_host_process_starts`` process starts
  on the process's host), the nearest memory detector whose *effective* radius covers its vector raises a
  finding of the detector's category: faster than the innate layer (it recognises the pattern before the
  innate thresholds are reached) and stronger (confidence grows with the detector's stimulations). The
  expansion is published; the detector itself does not move (maturation needs T-cell help: see the
  primary response). Once per (detector, antigen) per ``secondary_cooldown_s``.
* **Sensitivity** (the closed loops): effective radius = radius x ``(1 + sensitivity_per_level * level)``
  (the homeostatic threat level, 0-3) x ``(1 + recruitment_gain)`` when at least ``recruitment_min``
  inflammatory cytokines are live about the antigen's region (its /24, or its hosts' role): cytokines
  recruit the cell to the site of inflammation. A regulatory T cell's tolerance caps the radius at the
  self boundary and suppresses any recognition of a vector within its radius of self.

Confidence of a secondary finding: ``min(0.95, (0.55 + 0.1 * min(stimulations, 4)) * (1 - 0.5 * d / r))``
with ``d`` the distance and ``r`` the effective radius.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from uuid import UUID, uuid5

import numpy as np
from pydantic import Field

from immune_core.adaptive.clonalg import (
    ClonalgParams,
    MemoryDetector,
    affinity,
    clonal_selection,
    seeded_rng,
    stronger,
)
from immune_core.adaptive.features import Observation
from immune_core.adaptive.maturation import query_for
from immune_core.adaptive.recall import RecallQuery
from immune_core.adaptive.state import AdaptiveState, ClonalExpansion, Licence
from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.observation import Antigen, CellOutput, Finding
from immune_core.detection.threat import threat_signature

_DETECTOR_NAMESPACE = UUID("b4f1d2c7-5e3a-4c9b-8d61-0f2e7a9c3b45")
# Which feature space a confirmed category is learned in: a behaviour is remembered where it shows (an
# exfiltrating host's memory is of its uploads, not of whatever its channels happened to look like).
# Known-bad indicators are the macrophages' memory (intel), not a behaviour to generalise from.
LEARNING_SPACES: dict[str, tuple[str, ...]] = {
    "port_scan": ("source_ip",),
    "network_sweep": ("source_ip",),
    "brute_force": ("source_ip",),
    "exfiltration": ("upload",),
    "beaconing": ("channel",),
    "unsigned_process": ("process",),
    "unknown_process": ("process",),
    "behaviour_anomaly": ("source_ip", "process"),
}


class BCellParams(CellParams):
    memory_radius: float = Field(default=0.25, gt=0, le=2)
    repertoire_size: int = Field(default=20, ge=2, le=200)
    select: int = Field(default=5, ge=1, le=50)
    clone_factor: float = Field(default=1.0, gt=0, le=10)
    naive_spread: float = Field(default=0.3, gt=0, le=1)
    mutation_decay: float = Field(default=2.0, ge=0, le=50)
    mutation_sigma: float = Field(default=0.1, gt=0, le=1)
    replace: int = Field(default=2, ge=0, le=50)
    generations: int = Field(default=8, ge=1, le=20)
    min_source_flows: int = Field(default=8, ge=1, le=100_000)
    min_host_observations: int = Field(default=4, ge=1, le=100_000)
    min_host_process_starts: int = Field(default=20, ge=1, le=100_000)
    secondary_cooldown_s: float = Field(default=300.0, ge=0, le=86_400)
    sensitivity_per_level: float = Field(default=0.2, ge=0, le=2)
    recruitment_gain: float = Field(default=0.5, ge=0, le=5)
    recruitment_min: int = Field(default=1, ge=1, le=10_000)
    max_primed: int = Field(default=50_000, ge=1, le=400_000)


class BCell(Cell[BCellParams]):
    cell_type = "b_cell"
    params_model = BCellParams
    stage = 3
    description = "CLONALG clonal selection into memory detectors; recognises known threats again, faster."

    def __init__(self, params: BCellParams, cell_id: str) -> None:
        super().__init__(params, cell_id)
        self._clonalg = ClonalgParams(
            repertoire_size=params.repertoire_size,
            select=params.select,
            clone_factor=params.clone_factor,
            mutation_decay=params.mutation_decay,
            mutation_sigma=params.mutation_sigma,
            replace=params.replace,
            generations=params.generations,
        )
        # (antigen, space) -> licence expiry it had its primary response under (one per licence).
        self._primed: OrderedDict[tuple[Antigen, str], datetime] = OrderedDict()
        self._last_secondary: OrderedDict[tuple[str, Antigen], datetime] = OrderedDict()

    def state_summary(self) -> dict[str, int]:
        return {"primary": self.counters["primary"], "secondary": self.counters["secondary"]}

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        output = CellOutput()
        state = context.adaptive
        if state is None:
            return output
        for observation in state.observations:
            licence = state.licence(observation.antigen, context.now)
            if licence is not None:
                # Under T-cell help the antigen is already being answered (the innate layer found it):
                # one primary response per licence and space, and no memory recognition on top of it.
                primed = (observation.antigen, observation.space)
                if observation.space in LEARNING_SPACES.get(licence.category, ()) and (
                    self._primed.get(primed) != licence.until
                ):
                    self._primary(observation, licence, state, context.now)
            elif self._enough(observation):
                self._secondary(observation, state, context.now, event.event_id, output)
        return output

    def _enough(self, observation: Observation) -> bool:
        p = self.params
        kind = observation.antigen.type
        if kind == "source_ip":
            needed = p.min_source_flows
        elif kind == "host":
            needed = p.min_host_observations
        else:
            needed = p.min_host_process_starts
        return observation.observations >= needed

    # -- primary response ---------------------------------------------------------------------------
    def _primary(
        self, observation: Observation, licence: Licence, state: AdaptiveState, now: datetime
    ) -> None:
        antigen = observation.antigen
        primed = (antigen, observation.space)
        self._primed[primed] = licence.until
        self._primed.move_to_end(primed)
        while len(self._primed) > self.params.max_primed:
            self._primed.popitem(last=False)
        bank = state.memory[observation.space]
        vector = np.asarray(observation.vector, dtype=np.float64)
        signature = threat_signature(licence.category, antigen.type, antigen.value)
        rng = seeded_rng(self.lineage, signature, observation.space)
        known = [d.features for d in bank.detectors if d.category == licence.category][
            : self.params.repertoire_size
        ]
        # The naive B cells the antigen selects are those that already bind it, weakly: receptors spread
        # around it (``naive_spread``), not uniform over the space (where one presentation cannot converge).
        fresh = np.clip(
            vector
            + rng.normal(
                0.0, self.params.naive_spread, (self.params.repertoire_size - len(known), vector.shape[0])
            ),
            0.0,
            1.0,
        )
        repertoire = np.vstack([*known, fresh]) if known else fresh
        result, pool = clonal_selection(vector, repertoire, rng, self._clonalg)
        self.counters["primary"] += 1
        current = bank.closest(vector, licence.category)
        if current is not None and current[1] <= current[0].radius:
            detector = current[0]
            detector.stimulations += 1
            detector.severity = stronger(detector.severity, licence.severity)
            if float(np.linalg.norm(result.best - vector)) < current[1]:
                detector.features = result.best
            detector.updated_at = now
        else:
            rounded = ",".join(f"{x:.3f}" for x in result.best)
            detector = MemoryDetector(
                detector_id=str(
                    uuid5(_DETECTOR_NAMESPACE, f"{observation.space}|{licence.category}|{rounded}")
                ),
                antigen_type=antigen.type,
                space=observation.space,
                category=licence.category,
                features=result.best,
                radius=self.params.memory_radius,
                stimulations=1,
                severity=licence.severity,
                origin=signature,
                created_at=now,
                updated_at=now,
                base_radius=self.params.memory_radius,
            )
        state.remember(detector)
        # Affinity maturation may consult the platform's scorer (the Adaptive Immunity service): the
        # service asks it which of the kept detector and the pool's best antibodies binds best.
        if len(state.affinity_queries) < state.max_pending:
            state.affinity_queries.append(query_for(detector, vector, pool))
        # Recall: the platform's memory (the Memory service, when configured) may know variants of what
        # was just confirmed; the service asks it and loads what it returns into every engine.
        if len(state.recall_queries) < state.max_pending:
            state.recall_queries.append(
                RecallQuery(
                    antigen_type=antigen.type,
                    space=observation.space,  # type: ignore[arg-type]
                    features=tuple(round(float(x), 6) for x in vector),
                )
            )
        state.expanded(
            ClonalExpansion.of(
                "primary",
                self.cell_id,
                detector,
                antigen,
                observation.vector,
                result.clones,
                result.affinity,
                now,
            )
        )

    # -- secondary response -------------------------------------------------------------------------
    def _secondary(
        self,
        observation: Observation,
        state: AdaptiveState,
        now: datetime,
        event_id: UUID,
        output: CellOutput,
    ) -> None:
        p = self.params
        antigen = observation.antigen
        bank = state.memory[observation.space]
        if not len(bank):
            return
        scale = 1.0 + p.sensitivity_per_level * state.threat_level
        if state.cytokines.inflammation(antigen) >= p.recruitment_min:
            scale *= 1.0 + p.recruitment_gain
        vector = np.asarray(observation.vector, dtype=np.float64)
        match = bank.nearest(vector, scale)
        if match is None:
            return
        detector, distance = match
        key = (detector.detector_id, antigen)
        last = self._last_secondary.get(key)
        if last is not None and now - last < timedelta(seconds=p.secondary_cooldown_s):
            return
        if state.is_self(observation.space, vector):
            self.counters["suppressed_as_self"] += 1
            return
        self._last_secondary[key] = now
        self._last_secondary.move_to_end(key)
        while len(self._last_secondary) > p.max_primed:
            self._last_secondary.popitem(last=False)
        radius = detector.radius * scale
        confidence = round(
            min(0.95, (0.55 + 0.1 * min(detector.stimulations, 4)) * (1 - 0.5 * distance / radius)), 3
        )
        reason = (
            f"memory detector {detector.detector_id[:8]} ({detector.category}, learned from "
            f"{detector.origin}, {detector.stimulations} stimulations) recognises {antigen}: "
            f"distance {distance:.3f} within radius {radius:.3f} "
            f"(sensitivity x{scale:.2f}, threat level {state.threat_level})"
        )
        output.findings.append(
            Finding(
                antigen,
                detector.category,
                detector.severity,
                confidence,
                reason,
                now,
                (event_id,),
                self.cell_id,
                self.cell_type,
                observation.host_id,
            )
        )
        self.counters["secondary"] += 1
        # No maturation here: without T-cell help a recognition does not move the detector (it would
        # drift towards whatever it last matched, benign hosts included -- autoimmunity). When the innate
        # layer confirms the antigen, the helper T licence brings the primary path, which re-stimulates
        # and matures this detector.
        state.expanded(
            ClonalExpansion.of(
                "secondary",
                self.cell_id,
                detector,
                antigen,
                observation.vector,
                max(1, round(p.clone_factor * p.repertoire_size)),
                affinity(distance),
                now,
            )
        )
