"""Ethical AI client: validation of the response actions the core proposes.

Implements ``immune_core.responses.validation.ActionValidator``. When the service gives no valid answer
(down, slow past the timeout, 5xx, malformed, circuit open, bulkhead full) ``validate`` raises
``ValidatorUnavailable`` and the core applies its documented safe default
(``validation.validate_action``): critical actions are denied and recorded with the reason ("pending a
validator"), non-critical ones follow the default policy. Fallback name: ``safe_default``. The client
never turns a failure into an approval.
"""

from __future__ import annotations

from immune_core.clients.base import DependencyFailure, ServiceClient
from immune_core.responses.validation import ProposedAction, ValidationVerdict, ValidatorUnavailable

FALLBACK = "safe_default"


class EthicalAIClient(ServiceClient):
    """The Ethical AI service, the core's ``ActionValidator`` (module docstring: its safe default)."""

    service = "ethical_ai"
    name = "ethical-ai"

    async def validate(self, action: ProposedAction) -> ValidationVerdict:
        """Ethical AI's verdict on ``action``: approved -> allow, denied -> deny, with its reason (at most
        2,000 characters). Raises ``ValidatorUnavailable`` (fallback counted) when the service gave no valid
        answer: the caller then applies the safe default, never an approval."""
        action_id = str(action.action_id)

        def about_this_action(raw: dict[str, str]) -> str | None:
            return None if raw["action_id"] == action_id else "a decision about another action"

        body = {
            "action_id": action_id,
            "action": action.kind,
            "target": action.target,
            "severity": action.severity,
            "reason": action.reason,
            "threat_id": str(action.threat_id),
        }
        try:
            raw = await self.call(
                "validate", body=body, headers={"Idempotency-Key": action_id}, check=about_this_action
            )
        except DependencyFailure as exc:
            self.fallback(FALLBACK)
            raise ValidatorUnavailable(f"ethical AI unavailable ({exc.reason})") from exc
        policy = f" (policy {raw['policy']})" if raw.get("policy") else ""
        return ValidationVerdict(
            action_id=action.action_id,
            decision="allow" if raw["decision"] == "approved" else "deny",
            reason=(str(raw["reason"]) + policy)[:2000],
            validator=self.name,
        )
