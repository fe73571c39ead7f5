"""Helper T cell: activated by antigens presented in a dangerous context; licenses B and cytotoxic T cells.

Biology (two-signal model; Bretscher and Cohn 1970, Lafferty and Cunningham 1975; for the danger
context, P. Matzinger, "Tolerance, danger, and the extended family", Annu. Rev. Immunol. 12, 1994): a
naive T cell is activated only when an antigen-presenting cell shows it an antigen *and* signals danger;
the activated helper T cell then secretes IL-2 and licenses B cells and cytotoxic T cells for that
antigen. Without help, B cells make no memory and cytotoxic T cells do not kill.

Here the presentation and its context are the cytokines the engine has *read* about the antigen
(``AdaptiveState.cytokines``, live on the engine's event-time clock, whether emitted by this engine's
cells or received from the cytokine topics): ``il12`` (dendritic cells matured on it), ``tnf``
(a macrophage matched it to a known pathogen), ``ifn_gamma`` (an NK cell found it missing self) and
``il8`` (a neutrophil saw it burst) each weigh ``+1``; ``il10`` (dendritic cells presented it in a safe
context) weighs ``il10_weight`` (default -1). When the sum reaches ``activation_threshold`` the cell
grants a ``Licence`` on the antigen for ``licence_ttl_s`` seconds of event time, naming the category the
cytokines or the innate findings give (``behaviour_anomaly`` when none), and emits ``il2``. The
threshold is divided by ``1 + sensitivity_per_level * level`` (the homeostatic level, 0-3): a threatened
organism activates on less evidence. Antigens looked at per event: those the event touched and those
named by the cytokines or findings of this event.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from immune_core.adaptive.state import Licence
from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen, CellOutput
from immune_core.detection.threat import SEVERITY_RANK, ThreatCategory, ThreatSeverity

_PRESENTING = ("il12", "tnf", "ifn_gamma", "il8")


class HelperTParams(CellParams):
    activation_threshold: float = Field(default=1.0, gt=0, le=100)
    il10_weight: float = Field(default=-1.0, ge=-10, le=0)
    licence_ttl_s: float = Field(default=1800.0, gt=0, le=86_400)
    sensitivity_per_level: float = Field(default=0.25, ge=0, le=2)


class HelperT(Cell[HelperTParams]):
    cell_type = "helper_t"
    params_model = HelperTParams
    stage = 2
    description = (
        "Activated by antigens presented in a danger context (cytokines read); licenses B and cytotoxic T."
    )

    def state_summary(self) -> dict[str, int]:
        return {"licences_granted": self.counters["licences"]}

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        output = CellOutput()
        state = context.adaptive
        if state is None:
            return output
        p = self.params
        candidates: dict[Antigen, None] = {o.antigen: None for o in state.observations}
        for cytokine in context.cytokines:
            if cytokine.antigen_type in ("source_ip", "host", "process"):
                candidates[Antigen(cytokine.antigen_type, cytokine.antigen)] = None  # type: ignore[arg-type]
        for finding in context.findings:
            candidates[finding.antigen] = None
        threshold = p.activation_threshold / (1.0 + p.sensitivity_per_level * state.threat_level)
        for antigen in candidates:
            live = state.cytokines.by_antigen.get(antigen)
            if live is None:
                continue  # nothing presents it: a score of 0 is below any threshold (which is > 0)
            if state.licence(antigen, context.now) is not None:
                continue
            score = sum(live[kind] for kind in _PRESENTING) + p.il10_weight * live["il10"]
            if score < threshold:
                continue
            category, severity = self._what(antigen, context)
            if category is None:
                category = state.cytokines.categories.get(antigen, "behaviour_anomaly")
            until = context.now + timedelta(seconds=p.licence_ttl_s)
            state.grant(antigen, Licence(category, severity, until, self.cell_id))
            self.counters["licences"] += 1
            output.cytokines.append(
                Cytokine.emit(
                    "il2",
                    self.cell_id,
                    antigen.type,
                    antigen.value,
                    context.now,
                    {"category": category, "severity": severity, "score": round(score, 3)},
                )
            )
        return output

    @staticmethod
    def _what(antigen: Antigen, context: CellContext) -> tuple[ThreatCategory | None, ThreatSeverity]:
        """Category and severity of the strongest innate finding about the antigen in this event."""
        best = None
        for finding in context.findings:
            if finding.antigen == antigen and (
                best is None or SEVERITY_RANK[finding.severity] > SEVERITY_RANK[best.severity]
            ):
                best = finding
        if best is None:
            return None, "medium"
        return best.category, best.severity
