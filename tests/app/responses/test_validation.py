"""The action-validation contract: the validator's verdict when it answers, the safe default otherwise."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import pytest
from immune_core.responses.validation import (
    ActionValidator,
    ProposedAction,
    ValidationVerdict,
    ValidatorUnavailable,
    is_critical,
    validate_action,
)

THREAT = UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def action(kind: str = "isolate_host", target: str = "ws-01") -> ProposedAction:
    return ProposedAction.propose(
        kind,
        target,
        threat_id=THREAT,
        signature="exfiltration:host:ws-01",
        category="exfiltration",
        antigen_type="host",
        severity="high",
        confidence=0.9,
        reason="test",
        proposed_by="cytotoxic_t-1",
        proposed_at=AT,
        host_id="ws-01",
    )


class Denying:
    name = "ethical-test"

    async def validate(self, proposed: ProposedAction) -> ValidationVerdict:
        return ValidationVerdict(
            action_id=proposed.action_id, decision="deny", reason="user data at stake", validator=self.name
        )


class Allowing:
    name = "ethical-test"

    async def validate(self, proposed: ProposedAction) -> ValidationVerdict:
        return ValidationVerdict(
            action_id=proposed.action_id, decision="allow", reason="ok", validator=self.name
        )


class Down:
    name = "ethical-down"

    async def validate(self, proposed: ProposedAction) -> ValidationVerdict:
        raise ValidatorUnavailable("connect to http://user:secret@127.0.0.1:9/ refused")


class OffTopic:
    name = "ethical-confused"

    async def validate(self, proposed: ProposedAction) -> ValidationVerdict:
        return ValidationVerdict(action_id=THREAT, decision="allow", reason="ok", validator=self.name)


def run(validator: ActionValidator | None, proposed: ProposedAction) -> ValidationVerdict:
    return asyncio.run(validate_action(validator, proposed))


def test_test_validators_satisfy_the_protocol() -> None:
    assert isinstance(Denying(), ActionValidator)
    assert isinstance(Down(), ActionValidator)


@pytest.mark.parametrize(
    ("kind", "target", "critical"),
    [
        ("isolate_host", "ws-01", True),
        ("kill_process", "ws-01/evil.exe", True),
        ("block_source", "10.20.1.5", True),
        ("block_source", "::1", True),
        ("block_source", "not-an-address", True),
        ("block_source", "45.133.1.2", False),
    ],
)
def test_critical_actions(kind: str, target: str, critical: bool) -> None:
    assert is_critical(kind, target) is critical
    assert action(kind, target).critical is critical


def test_without_a_validator_critical_actions_are_denied_and_external_blocks_allowed() -> None:
    denied = run(None, action("isolate_host", "ws-01"))
    assert denied.decision == "deny" and denied.validator == "default-policy" and not denied.degraded
    assert "needs a validator's approval" in denied.reason
    allowed = run(None, action("block_source", "45.133.1.2"))
    assert allowed.decision == "allow" and allowed.validator == "default-policy"


def test_the_validator_decides_when_it_answers() -> None:
    assert run(Denying(), action("block_source", "45.133.1.2")).reason == "user data at stake"
    verdict = run(Allowing(), action("isolate_host"))
    assert verdict.allowed and verdict.validator == "ethical-test"


def test_a_failing_validator_falls_back_to_the_safe_default_without_leaking_its_error_text() -> None:
    verdict = run(Down(), action("kill_process", "ws-01/evil.exe"))
    assert verdict.decision == "deny" and verdict.degraded
    assert "ValidatorUnavailable" in verdict.reason and "secret" not in verdict.reason
    assert run(Down(), action("block_source", "45.133.1.2")).allowed


def test_an_answer_about_another_action_is_not_trusted() -> None:
    verdict = run(OffTopic(), action("isolate_host"))
    assert verdict.decision == "deny" and verdict.degraded


def test_action_ids_are_derived() -> None:
    assert action().action_id == action().action_id
    assert action("isolate_host", "ws-02").action_id != action().action_id
