"""A cytotoxic T cell's proposal before validation, and the decision recorded for it afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from immune_core.responses.validation import ProposedAction, ValidationVerdict


@dataclass(frozen=True, slots=True)
class Proposal:
    """``action`` as proposed; ``verdict`` is set when the engine already decided (damped by a regulatory
    T cell) and the validator need not be asked, else None."""

    action: ProposedAction
    verdict: ValidationVerdict | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A proposal and the verdict it got: allowed ones are published, denied ones recorded with the reason."""

    action: ProposedAction
    verdict: ValidationVerdict

    @property
    def published(self) -> bool:
        return self.verdict.allowed


class ResponseProposed(BaseModel):
    """One message of ``immunis.responses.proposed``: an allowed action and the verdict that allowed it.

    For whoever executes responses (a SOAR, a firewall manager); the core itself never does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    action: ProposedAction
    verdict: ValidationVerdict
