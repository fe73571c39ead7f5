"""Cytotoxic T cell: the response side. Proposes actions for confirmed threats; it never executes them.

For every threat the engine raises, a cytotoxic T cell proposes one action when the threat is
*confirmed* -- its antigen holds a helper T cell's licence (T-cell help, as CD8+ T cells need CD4+ help
to become killers), or memory recognised it (a B cell contributed), or its confidence is at least
``confirm_confidence`` -- and its severity is at least ``min_severity``:

* antigen ``source_ip`` -> ``block_source`` (the address);
* antigen ``host`` -> ``isolate_host`` (the host id);
* antigen ``process`` -> ``kill_process`` (``host/process``).

One proposal per (action, target) per ``proposal_cooldown_s`` seconds of event time. Proposals leave
the engine through ``DetectionEngine.drain_proposals()``; the service puts each to the action validator
(``responses.validation``: Ethical AI, or the documented safe default), publishes the allowed ones on
``immunis.responses.proposed`` and records the denied ones with the reason. When a regulatory T cell
damps the response (threat level at or above its ``damping_level``), a critical action past its budget
or below its confidence floor is not put to the validator at all: it is recorded as denied, "damped".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import Field

from immune_core.adaptive.state import AdaptiveState
from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.observation import Antigen, CellOutput
from immune_core.detection.threat import SEVERITY_RANK, Threat, ThreatSeverity
from immune_core.homeostasis.levels import level_name
from immune_core.responses.proposals import Proposal
from immune_core.responses.validation import ActionKind, ProposedAction, ValidationVerdict

_ACTION_BY_ANTIGEN: dict[str, ActionKind] = {
    "source_ip": "block_source",
    "host": "isolate_host",
    "process": "kill_process",
}


class CytotoxicTParams(CellParams):
    confirm_confidence: float = Field(default=0.9, ge=0, le=1)
    min_severity: ThreatSeverity = "medium"
    proposal_cooldown_s: float = Field(default=3600.0, ge=0, le=30 * 86_400)
    max_targets: int = Field(default=50_000, ge=1, le=400_000)


class CytotoxicT(Cell[CytotoxicTParams]):
    cell_type = "cytotoxic_t"
    params_model = CytotoxicTParams
    stage = 4
    description = "Proposes block/isolate/kill for confirmed threats (validated, published; never executed)."

    def __init__(self, params: CytotoxicTParams, cell_id: str) -> None:
        super().__init__(params, cell_id)
        self._proposed: OrderedDict[tuple[str, str], datetime] = OrderedDict()

    def state_summary(self) -> dict[str, int]:
        return {"proposed": self.counters["proposed"], "damped": self.counters["damped"]}

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        return CellOutput()  # acts on threats, in ``respond``

    def respond(self, threats: Sequence[Threat], context: CellContext) -> list[Proposal]:
        state = context.adaptive
        proposals: list[Proposal] = []
        for threat in threats:
            why = self._confirmed(threat, state, context.now)
            if why is None or SEVERITY_RANK[threat.severity] < SEVERITY_RANK[self.params.min_severity]:
                continue
            kind = _ACTION_BY_ANTIGEN[threat.antigen_type]
            target = threat.antigen
            key = (kind, target)
            last = self._proposed.get(key)
            if last is not None and context.now - last < timedelta(seconds=self.params.proposal_cooldown_s):
                continue
            self._proposed[key] = context.now
            self._proposed.move_to_end(key)
            while len(self._proposed) > self.params.max_targets:
                self._proposed.popitem(last=False)
            action = ProposedAction.propose(
                kind,
                target,
                threat_id=threat.threat_id,
                signature=threat.signature,
                category=threat.category,
                antigen_type=threat.antigen_type,
                severity=threat.severity,
                confidence=threat.confidence,
                reason=f"{threat.category} on {threat.antigen_type} {threat.antigen}, confirmed by {why}",
                proposed_by=self.cell_id,
                proposed_at=context.now,
                host_id=threat.host_id,
            )
            proposals.append(Proposal(action, self._damped(action, state, context.now)))
        return proposals

    def _confirmed(self, threat: Threat, state: AdaptiveState | None, now: datetime) -> str | None:
        antigen = Antigen(threat.antigen_type, threat.antigen)
        if state is not None and (licence := state.licence(antigen, now)) is not None:
            return f"helper T licence ({licence.by})"
        if "b_cell" in threat.cells:
            return "immunological memory"
        if threat.confidence >= self.params.confirm_confidence:
            return f"confidence {threat.confidence:.2f}"
        return None

    def _damped(
        self, action: ProposedAction, state: AdaptiveState | None, now: datetime
    ) -> ValidationVerdict | None:
        """A 'damped' denial when a regulatory T cell holds this critical action back, else None."""
        self.counters["proposed"] += 1
        if state is None or not action.critical:
            return None
        damping = state.damping
        horizon = now - timedelta(seconds=damping.window_s if damping else 3600.0)
        while state.critical_proposed and state.critical_proposed[0] < horizon:
            state.critical_proposed.popleft()
        if damping is not None and damping.active:
            level = level_name(state.threat_level)
            reason = None
            if action.confidence < damping.min_confidence:
                reason = (
                    f"damped by {damping.by} at threat level {level}: confidence {action.confidence:.2f} "
                    f"is below {damping.min_confidence:.2f} for a critical action"
                )
            elif len(state.critical_proposed) >= damping.max_critical:
                reason = (
                    f"damped by {damping.by} at threat level {level}: "
                    f"{len(state.critical_proposed)} critical actions already proposed within "
                    f"{damping.window_s:g} s (limit {damping.max_critical})"
                )
            if reason is not None:
                self.counters["damped"] += 1
                return ValidationVerdict(
                    action_id=action.action_id, decision="deny", reason=reason, validator=damping.by
                )
        state.critical_proposed.append(now)
        return None
