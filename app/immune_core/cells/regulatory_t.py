"""Regulatory T cell: tolerance to self, and damping of the response when the organism is on alert.

1. **Self, learned in a training window.** For ``training_s`` seconds of event time from the first event
   its engine sees, every antigen vector observed that no cell found hostile (no finding, no licence) is
   a self sample (``adaptive.tolerance.SelfSet``). The window assumes that period is clean; an attack
   running during it is learned as self (the known weakness of negative selection).
2. **Negative selection** (Forrest et al. 1994; variable radius after Ji and Dasgupta 2004): every memory
   detector is censored against self before it may recognise anything -- shrunk to end ``self_radius``
   short of the nearest self sample, deleted when less than ``min_radius`` is left. Detectors are
   re-censored whenever the self set has grown by a tenth since (at least one sample, at most
   ``recensor_every``).
3. **Suppression of self-reactive recognitions**: a B cell recognition of an antigen whose current
   vector lies within ``self_radius`` of a self sample is suppressed (counted, nothing raised).
4. **Damping at high homeostatic levels**: at threat level >= ``damping_level`` (0-3; 2 = high) the
   cytotoxic T cells may propose at most ``max_critical_per_window`` *critical* actions (isolate a host,
   kill a process, block an internal address) per ``damping_window_s`` seconds and only for threats of
   confidence >= ``damping_min_confidence``; what is held back is recorded as denied ("damped"). High
   alert makes every cell more sensitive; this keeps sensitivity from turning into an action storm
   against the organisation's own machines.

Runs at stage 2, before the B cells (stage 3), so a detector is censored before its first match.
"""

from __future__ import annotations

from pydantic import Field

from immune_core.adaptive.state import AdaptiveState, Damping, Tolerance
from immune_core.adaptive.tolerance import censor
from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.observation import CellOutput


class RegulatoryTParams(CellParams):
    training_s: float = Field(default=900.0, ge=0, le=30 * 86_400)
    self_radius: float = Field(default=0.05, ge=0, le=2)
    min_radius: float = Field(default=0.05, gt=0, le=2)
    recensor_every: int = Field(default=200, ge=1, le=100_000)
    damping_level: int = Field(default=2, ge=0, le=3)
    max_critical_per_window: int = Field(default=3, ge=0, le=10_000)
    damping_window_s: float = Field(default=3600.0, gt=0, le=86_400)
    damping_min_confidence: float = Field(default=0.9, ge=0, le=1)


class RegulatoryT(Cell[RegulatoryTParams]):
    cell_type = "regulatory_t"
    params_model = RegulatoryTParams
    stage = 2
    description = (
        "Tolerance: negative selection of memory detectors over self; damps responses at high alert."
    )

    def __init__(self, params: RegulatoryTParams, cell_id: str) -> None:
        super().__init__(params, cell_id)
        self._censored: dict[str, int] = {}  # detector id -> self-set size when last censored
        self._stamp: tuple[int, int] = (-1, -1)
        # What this cell lends the state on every event; rebuilt only when the threat level moves (one
        # object per event showed in profiles of the ingest path).
        self._tolerance = Tolerance(self_radius=params.self_radius, by=cell_id)
        self._damping: tuple[int, Damping] | None = None

    def state_summary(self) -> dict[str, int]:
        return {"censored": self.counters["censored"], "suppressed": self.counters["suppressed"]}

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        state = context.adaptive
        if state is None:
            return CellOutput()
        p = self.params
        state.damping = self._damping_at(state.threat_level)
        if state.observations and state.in_training(context.now, p.training_s):
            hostile = {f.antigen for f in context.findings}
            for observation in state.observations:
                if (
                    observation.antigen not in hostile
                    and state.licence(observation.antigen, context.now) is None
                ):
                    state.learn_self(observation.space, observation.vector)
        self._negative_selection(state)
        # Checked by the B cells only when a detector recognises something (a distance to every self
        # sample on every event would cost more than the rest of the adaptive layer).
        if self._tolerance.by != self.cell_id:  # a clone starts with its original's
            self._tolerance = Tolerance(self_radius=p.self_radius, by=self.cell_id)
        state.tolerance = self._tolerance
        return CellOutput()

    def _damping_at(self, level: int) -> Damping:
        if self._damping is None or self._damping[0] != level or self._damping[1].by != self.cell_id:
            p = self.params
            damping = Damping(
                active=level >= p.damping_level,
                max_critical=p.max_critical_per_window,
                window_s=p.damping_window_s,
                min_confidence=p.damping_min_confidence,
                by=self.cell_id,
            )
            self._damping = (level, damping)
        return self._damping[1]

    def _negative_selection(self, state: AdaptiveState) -> None:
        p = self.params
        # Nothing to do unless a detector is new or self has grown since the last pass (cheap check).
        stamp = (state.memory_version, state.self_version)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        for space, bank in state.memory.items():
            self_set = state.self_sets[space]
            if not len(self_set):
                continue
            changed = False
            for detector in list(bank.detectors):
                size = self._censored.get(detector.detector_id)
                # Re-censor once self has grown by a tenth (at least one sample, at most recensor_every).
                due = max(1, min(p.recensor_every, (size or 0) // 10))
                if size is not None and len(self_set) - size < due and not detector.fresh:
                    continue
                before = detector.radius
                survives = censor(detector, self_set, p.self_radius, p.min_radius)
                detector.fresh = False
                self._censored[detector.detector_id] = len(self_set)
                if not survives:
                    bank.detectors.remove(detector)
                    state.deleted_memory.append(detector.detector_id)
                    self.counters["censored"] += 1
                    changed = True
                elif detector.radius != before:
                    self.counters["shrunk"] += 1
                    state.dirty_memory[detector.detector_id] = detector
                    changed = True
            if changed:
                bank.changed()
