"""Validation of proposed response actions: the contract between the core and an action validator.

The core *proposes* responses (the cytotoxic T cell: block a source, isolate a host, kill a process);
it never executes them. Before a proposal is published on ``immunis.responses.proposed`` it is put to
an ``ActionValidator`` -- in production the Ethical AI service (``immune_core.clients``), which states
whether the action may be taken and why. A denied proposal is not published; it is recorded with the
validator's reason.

The documented default (``SAFE_DEFAULT``, applied by ``validate_action``):

* **no validator configured, or the validator cannot answer** (``ValidatorUnavailable``, a timeout, an
  open circuit, a malformed answer): *critical* actions -- ``isolate_host``, ``kill_process``, and
  ``block_source`` of an internal address (RFC 1918, RFC 6598, loopback, link-local, IPv6 ULA: an
  organisation's own machine) -- are **denied**
  (fail closed: taking a host or process away without an independent check is the harm to avoid);
  non-critical actions -- ``block_source`` of an external address -- are **allowed** (a block of an
  outside address is cheap to undo and is what a firewall does on its own).
* The verdict says which rule decided it: ``validator`` is ``"default-policy"`` and ``degraded`` is
  true when the configured validator failed (the reason names the failure's type, never its text,
  which could carry a URL with credentials).

Implementing a validator: a class with a ``name`` and ``async def validate(action) -> ValidationVerdict``
that raises ``ValidatorUnavailable`` (or any exception) when it cannot decide; it must not invent an
``allow`` it did not get.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, runtime_checkable
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from immune_core.adaptive.features import is_internal
from immune_core.detection.threat import AntigenType, ThreatCategory, ThreatSeverity

ActionKind: TypeAlias = Literal["block_source", "isolate_host", "kill_process"]
ACTION_KINDS: tuple[ActionKind, ...] = ("block_source", "isolate_host", "kill_process")
Decision: TypeAlias = Literal["allow", "deny"]
RESPONSES_PROPOSED_TOPIC = "immunis.responses.proposed"
DEFAULT_POLICY_NAME = "default-policy"
_ACTION_NAMESPACE = UUID("3d6f5a0e-8c2b-4b71-9e44-1a7f0c6d2b58")


class ProposedAction(BaseModel):
    """One response the core proposes for a confirmed threat (it never executes it itself).

    ``target`` is what the action acts on: an IP address (``block_source``), a ``host_id``
    (``isolate_host``), or ``host_id/process`` (``kill_process``). ``action_id`` is derived (UUIDv5 of
    kind, target and threat id), so replicas and retries propose the same action under the same id.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: UUID
    kind: ActionKind
    target: str = Field(min_length=1, max_length=600)
    critical: bool = Field(description="Takes a host or process away, or blocks an internal address.")
    threat_id: UUID
    signature: str = Field(min_length=1, max_length=800)
    category: ThreatCategory
    antigen_type: AntigenType
    severity: ThreatSeverity
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field(max_length=2000)
    proposed_by: str = Field(min_length=1, max_length=120, description="Id of the proposing cell.")
    proposed_at: AwareDatetime = Field(description="Event time of the threat that led to the proposal.")
    host_id: str | None = None

    @classmethod
    def propose(
        cls,
        kind: ActionKind,
        target: str,
        *,
        threat_id: UUID,
        signature: str,
        category: ThreatCategory,
        antigen_type: AntigenType,
        severity: ThreatSeverity,
        confidence: float,
        reason: str,
        proposed_by: str,
        proposed_at: datetime,
        host_id: str | None = None,
    ) -> ProposedAction:
        return cls(
            action_id=uuid5(_ACTION_NAMESPACE, f"{kind}|{target}|{threat_id}"),
            kind=kind,
            target=target,
            critical=is_critical(kind, target),
            threat_id=threat_id,
            signature=signature,
            category=category,
            antigen_type=antigen_type,
            severity=severity,
            confidence=confidence,
            reason=reason[:2000],
            proposed_by=proposed_by,
            proposed_at=proposed_at,
            host_id=host_id,
        )


class ValidationVerdict(BaseModel):
    """A validator's answer about one ``ProposedAction``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: UUID
    decision: Decision
    reason: str = Field(min_length=1, max_length=2000)
    validator: str = Field(min_length=1, max_length=120, description="Who decided: a service or the default.")
    degraded: bool = Field(default=False, description="The configured validator failed; the default decided.")

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


class ValidatorUnavailable(Exception):
    """The validator could not decide (down, timed out, circuit open, malformed answer)."""


@runtime_checkable
class ActionValidator(Protocol):
    """Decides whether a proposed action may be published (Ethical AI implements it)."""

    name: str

    async def validate(self, action: ProposedAction) -> ValidationVerdict:
        """The verdict on ``action``; raises ``ValidatorUnavailable`` when it cannot decide."""
        ...


def is_critical(kind: ActionKind, target: str) -> bool:
    """Isolating a host and killing a process are critical; so is blocking an internal address."""
    if kind != "block_source":
        return True
    try:
        ipaddress.ip_address(target)
    except ValueError:
        return True  # not an address: cannot tell what would be blocked, treat as critical
    # The organisation's own space (RFC 1918, RFC 6598, loopback, link-local, ULA): the same line the
    # adaptive layer draws between internal and external (documentation ranges are not internal).
    return is_internal(target)


def default_verdict(action: ProposedAction, *, degraded: bool, why: str) -> ValidationVerdict:
    """``SAFE_DEFAULT``: deny critical actions, allow non-critical ones (see the module docstring)."""
    if action.critical:
        decision: Decision = "deny"
        reason = f"{why}: critical action {action.kind} on {action.target} needs a validator's approval"
    else:
        decision = "allow"
        reason = f"{why}: non-critical action {action.kind} on {action.target} allowed by the default policy"
    return ValidationVerdict(
        action_id=action.action_id,
        decision=decision,
        reason=reason,
        validator=DEFAULT_POLICY_NAME,
        degraded=degraded,
    )


SAFE_DEFAULT = default_verdict


async def validate_action(validator: ActionValidator | None, action: ProposedAction) -> ValidationVerdict:
    """The verdict for ``action``: the validator's, or ``SAFE_DEFAULT`` when there is none or it fails.

    Never raises for a validator failure. A verdict about another action id is a malformed answer and
    is treated as a failure too.
    """
    if validator is None:
        return default_verdict(action, degraded=False, why="no action validator configured")
    try:
        verdict = await validator.validate(action)
    except Exception as exc:  # the validator's failure must never fail the response path
        return default_verdict(
            action, degraded=True, why=f"validator {validator.name} unavailable ({type(exc).__name__})"
        )
    if verdict.action_id != action.action_id:
        return default_verdict(
            action, degraded=True, why=f"validator {validator.name} answered about another action"
        )
    return verdict


__all__ = [
    "ACTION_KINDS",
    "DEFAULT_POLICY_NAME",
    "RESPONSES_PROPOSED_TOPIC",
    "SAFE_DEFAULT",
    "ActionKind",
    "ActionValidator",
    "Decision",
    "ProposedAction",
    "ValidationVerdict",
    "ValidatorUnavailable",
    "default_verdict",
    "is_critical",
    "validate_action",
]
