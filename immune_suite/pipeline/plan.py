"""The promotion plan as data: steps, what each does, and where each outcome leads.

A plan is derived from the stack config (canary steps, chaos on/off, approval) and from whether
anything is running yet (the first promotion has no stable to compare against, so it has no
canary). Every step's failure leads to `rollback`; `rollback` leads to the terminal `rolled_back`
when traffic is back on stable and the candidate is gone, and to the terminal `rollback_failed` when
the target refused even after retries (traffic may still be split: the guard keeps restoring).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from immune_suite.stack_config import StackConfig


class StepKind(StrEnum):
    APPROVAL = "approval"
    SECURITY = "security"
    DEPLOY = "deploy"
    SMOKE = "smoke"
    API_FUZZ = "api_fuzz"
    CANARY = "canary"
    CHAOS = "chaos"
    SWITCH = "switch"
    POST_CHECK = "post_check"
    RETIRE = "retire"
    ROLLBACK = "rollback"


PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
# The rollback itself failed: the run is over, but traffic may still reach the candidate. Distinct from
# `rolled_back` so that nobody reads "safe" into it (exit code 10; the guard keeps restoring stable).
ROLLBACK_FAILED = "rollback_failed"
TERMINAL = (PROMOTED, ROLLED_BACK, ROLLBACK_FAILED)
ROLLBACK_STEP = "rollback"

DESCRIPTIONS: dict[StepKind, str] = {
    StepKind.APPROVAL: "wait for a person to approve (immune-suite approve) before anything changes",
    StepKind.SECURITY: "security gate on the candidate source (bandit, pip-audit, detect-secrets, checkov)",
    StepKind.DEPLOY: "deploy the candidate to the idle colour and wait until every replica is ready",
    StepKind.SMOKE: "smoke test the candidate through the preview endpoint",
    StepKind.API_FUZZ: "security gate, API half: fuzz the candidate's OpenAPI on preview (no 5xx, conforms)",
    StepKind.CANARY: "send a share of ingress traffic to the candidate, load it, compare with stable",
    StepKind.CHAOS: "chaos gate: kill instances and dependencies, require recovery and no lost events",
    StepKind.SWITCH: "make the candidate's colour the active one (100% of traffic)",
    StepKind.POST_CHECK: "check the stable endpoint now serves the candidate, healthy, without errors",
    StepKind.RETIRE: "after a delay (fast rollback window), scale the old colour away",
    StepKind.ROLLBACK: "traffic back to stable at once, then scale the candidate away (retried with backoff)",
}

# Steps during which ingress traffic may be split between colours: a crash here must put all
# traffic back on stable before anything else happens.
TRAFFIC_SPLIT_KINDS = frozenset({StepKind.CANARY, StepKind.CHAOS})


@dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    on_pass: str
    on_fail: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(
            id=data["id"],
            kind=StepKind(data["kind"]),
            on_pass=data["on_pass"],
            on_fail=data["on_fail"],
            params=dict(data.get("params", {})),
        )


def _chain(entries: list[tuple[str, StepKind, dict[str, Any]]], rollback_retry_s: float) -> list[Step]:
    steps = []
    for index, (step_id, kind, params) in enumerate(entries):
        following = entries[index + 1][0] if index + 1 < len(entries) else PROMOTED
        steps.append(Step(step_id, kind, on_pass=following, on_fail=ROLLBACK_STEP, params=params))
    steps.append(
        Step(
            ROLLBACK_STEP,
            StepKind.ROLLBACK,
            on_pass=ROLLED_BACK,
            on_fail=ROLLBACK_FAILED,
            params={"retry_s": rollback_retry_s},
        )
    )
    return steps


def build_plan(stack: StackConfig, first_promotion: bool, skip_gates: bool = False) -> list[Step]:
    """The steps of one promotion of `stack`.

    `skip_gates` is the plan of `immune-suite rollback`: re-promoting a release that already
    passed every gate, so only deploy, smoke, switch, check and retire remain.
    """
    entries: list[tuple[str, StepKind, dict[str, Any]]] = []
    if stack.approval_required:
        entries.append(("approval", StepKind.APPROVAL, {}))
    if stack.security.enabled and not skip_gates:
        entries.append(("security", StepKind.SECURITY, {}))
    entries.append(("deploy", StepKind.DEPLOY, {"replicas": stack.replicas}))
    entries.append(("smoke", StepKind.SMOKE, {"timeout_s": stack.smoke_timeout_s}))
    if stack.security.enabled and stack.security.fuzz_api and not skip_gates:
        entries.append(("api-fuzz", StepKind.API_FUZZ, {}))
    if not first_promotion and not skip_gates:
        for percent in stack.canary.steps:
            entries.append(
                (
                    f"canary-{percent}",
                    StepKind.CANARY,
                    {
                        "percent": percent,
                        "duration_s": stack.canary.step_duration_s,
                        "shape": stack.canary.load_shape,
                    },
                )
            )
    if stack.chaos.enabled and stack.chaos.experiments and not skip_gates:
        entries.append(("chaos", StepKind.CHAOS, {"experiments": list(stack.chaos.experiments)}))
    entries.append(("switch", StepKind.SWITCH, {}))
    entries.append(("post-check", StepKind.POST_CHECK, {"requests": stack.post_check_requests}))
    if not first_promotion:
        entries.append(("retire", StepKind.RETIRE, {"delay_s": stack.retire_delay_s}))
    return _chain(entries, stack.rollback_retry_s)


def render_plan(steps: list[Step]) -> str:
    """The plan as a table: step, kind, what it does, where pass and fail lead."""
    width = max(len(s.id) for s in steps)
    edge = max([12] + [len(s.on_pass) for s in steps] + [len(s.on_fail) for s in steps])
    lines = [f"{'step'.ljust(width)}  {'on pass'.ljust(edge)}  {'on fail'.ljust(edge)}  what it does"]
    for step in steps:
        params = ", ".join(f"{k}={v}" for k, v in step.params.items())
        what = step.description + (f" [{params}]" if params else "")
        lines.append(
            f"{step.id.ljust(width)}  {step.on_pass.ljust(edge)}  {step.on_fail.ljust(edge)}  {what}"
        )
    return "\n".join(lines)
