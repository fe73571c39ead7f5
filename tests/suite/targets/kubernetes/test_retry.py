"""The Kubernetes target's `up` waits out a stack busy with another update (backoff), and only that:
any other failure is reported at once, so the pipeline's own rollback retry decides what happens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pulumi import automation as auto

from immune_suite.targets.base import TargetError
from immune_suite.targets.kubernetes import KubernetesTarget, KubernetesTargetOptions

BUSY = "error: [409] Conflict: Another update is currently in progress."


@dataclass
class Summary:
    resource_changes: dict[str, int] = field(default_factory=lambda: {"update": 1, "same": 40})


@dataclass
class Result:
    summary: Summary = field(default_factory=Summary)


class ScriptedStack:
    """Stands in for `auto.Stack`: each `up` pops the next stderr to fail with, then succeeds."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = list(failures)
        self.ups = 0

    def up(self, **kwargs: Any) -> Result:
        self.ups += 1
        assert kwargs["show_secrets"] is False
        if self.failures:
            raise auto.errors.create_command_error(auto.CommandResult("", self.failures.pop(0), 255))
        return Result()


def target_with(stack: ScriptedStack, busy_wait_s: float) -> KubernetesTarget:
    options = KubernetesTargetOptions(stack="staging", engine_env={}, busy_wait_s=busy_wait_s)
    target = KubernetesTarget(options)
    target._stack = stack  # type: ignore[assignment]  # no engine needed for the retry logic
    return target


def test_a_busy_stack_is_waited_out() -> None:
    stack = ScriptedStack([BUSY, BUSY])
    outcome = target_with(stack, busy_wait_s=60).up()
    assert outcome.changed and stack.ups == 3


def test_a_stack_busy_for_too_long_is_a_target_error() -> None:
    stack = ScriptedStack([BUSY] * 5)
    with pytest.raises(TargetError, match="pulumi up failed"):
        target_with(stack, busy_wait_s=0).up()
    assert stack.ups == 1


def test_other_failures_are_not_retried_here() -> None:
    stack = ScriptedStack(["error: resource immune-core-green failed to become ready"])
    with pytest.raises(TargetError, match="failed to become ready"):
        target_with(stack, busy_wait_s=60).up()
    assert stack.ups == 1
