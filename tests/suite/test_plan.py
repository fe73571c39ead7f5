"""The plan is data: the right steps for each situation, and every failure edge leads to rollback."""

from __future__ import annotations

from immune_suite.pipeline.plan import (
    PROMOTED,
    ROLLBACK_FAILED,
    ROLLBACK_STEP,
    ROLLED_BACK,
    TERMINAL,
    Step,
    StepKind,
    build_plan,
    render_plan,
)
from immune_suite.stack_config import StackConfig, load_stack


def kinds(steps: list[Step]) -> list[str]:
    return [s.id for s in steps]


def test_promotion_with_stable_has_canary_steps_from_config() -> None:
    stack = StackConfig.model_validate({"name": "x", "canary": {"steps": [5, 25, 100]}})
    steps = build_plan(stack, first_promotion=False)
    assert kinds(steps) == [
        "security",
        "deploy",
        "smoke",
        "api-fuzz",
        "canary-5",
        "canary-25",
        "canary-100",
        "switch",
        "post-check",
        "retire",
        ROLLBACK_STEP,
    ]


def test_first_promotion_has_no_canary_and_no_retire() -> None:
    steps = build_plan(load_stack("local"), first_promotion=True)
    assert not [s for s in steps if s.kind in (StepKind.CANARY, StepKind.RETIRE)]
    assert kinds(steps)[:3] == ["security", "deploy", "smoke"]


def test_every_step_fails_into_rollback_and_chain_ends_promoted() -> None:
    steps = build_plan(load_stack("local"), first_promotion=False)
    ids = {s.id for s in steps}
    for step in steps:
        if step.kind is StepKind.ROLLBACK:
            # a rollback the target refuses is its own terminal state, never "rolled back"
            assert (step.on_pass, step.on_fail) == (ROLLED_BACK, ROLLBACK_FAILED)
            assert step.params["retry_s"] > 0
        else:
            assert step.on_fail == ROLLBACK_STEP
            assert step.on_pass in ids or step.on_pass == PROMOTED
    assert next(s for s in steps if s.on_pass == PROMOTED).kind is StepKind.RETIRE


def test_prod_asks_for_approval_before_anything_changes() -> None:
    steps = build_plan(load_stack("prod"), first_promotion=False)
    assert steps[0].kind is StepKind.APPROVAL


def test_rollback_plan_skips_gates() -> None:
    steps = build_plan(load_stack("local"), first_promotion=False, skip_gates=True)
    assert {s.kind for s in steps}.isdisjoint({StepKind.SECURITY, StepKind.CANARY, StepKind.CHAOS})


def test_render_lists_every_transition() -> None:
    text = render_plan(build_plan(load_stack("local"), first_promotion=False))
    first, second = load_stack("local").canary.steps[:2]  # stacks/local.yaml: [25, 50, 100]
    assert f"canary-{first}   canary-{second}" in text
    rows = {line.split()[0]: line.split()[1:3] for line in text.splitlines()[1:]}
    assert rows[f"canary-{first}"] == [f"canary-{second}", "rollback"]
    assert rows["rollback"] == ["rolled_back", "rollback_failed"]


def test_rollback_failed_is_terminal_and_distinct() -> None:
    assert ROLLBACK_FAILED in TERMINAL and len(set(TERMINAL)) == 3
