"""The policy pack (infra/policy_pack) enforced by the real engine with `pulumi preview --policy-pack`.

Both real stacks pass it. The refusal is shown on a small probe program whose stack config asks for
what the rules forbid (an unpinned image, no resource bounds, a privileged container): the real
program's typed config model already rejects such values before any resource is declared, so only
a program without that model can hand the engine a non-compliant object for the pack to refuse.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pulumi import automation as auto

from immune_suite.paths import REPO_ROOT
from immune_suite.targets.base import TargetError
from tests.support.engine import STACKS, EngineProject

pytestmark = pytest.mark.engine

POLICY_PACK = REPO_ROOT / "infra" / "policy_pack"

PROBE_PROGRAM = textwrap.dedent(
    '''
    """A Deployment whose compliance is decided by stack config alone."""
    import pulumi
    import pulumi_kubernetes as k8s

    config = pulumi.Config()
    provider = k8s.Provider("render", render_yaml_to_directory=config.require("renderDir"))
    container = {"name": "probe", "image": config.require("image")}
    if config.get_bool("bounded"):
        container["resources"] = {
            "requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"},
        }
    if config.get_bool("privileged"):
        container["security_context"] = {"privileged": True, "allow_privilege_escalation": True}
    k8s.apps.v1.Deployment(
        "probe",
        metadata={"name": "probe", "namespace": "probe"},
        spec={
            "selector": {"match_labels": {"app": "probe"}},
            "template": {"metadata": {"labels": {"app": "probe"}}, "spec": {"containers": [container]}},
        },
        opts=pulumi.ResourceOptions(provider=provider),
    )
    '''
)


@pytest.mark.parametrize("stack", STACKS)
def test_real_stacks_pass_the_policy_pack(stack: str, engine_project: EngineProject) -> None:
    target = engine_project.target(stack, render_dir=engine_project.root / "render" / f"policy-{stack}")
    try:
        outcome = target.preview(policy_packs=[str(POLICY_PACK)])
    except TargetError as exc:
        pytest.fail(f"{stack} violates the policy pack:\n{exc}")
    assert outcome.changes.get("create", 0) > 20


def _probe_stack(root: Path, engine_project: EngineProject) -> auto.Stack:
    project = root / "probe"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: policy-probe\n"
        "runtime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {REPO_ROOT / '.venv'}\n",
        encoding="utf-8",
    )
    (project / "__main__.py").write_text(PROBE_PROGRAM, encoding="utf-8")
    env = dict(engine_project.engine_env)
    env["PULUMI_BACKEND_URL"] = engine_project.backend.as_uri()
    env["PULUMI_CONFIG_PASSPHRASE"] = engine_project.passphrase
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(project),
        env_vars=env,
        secrets_provider="passphrase",
        pulumi_command=auto.PulumiCommand(root=env["PULUMI_ENGINE_DIR"]),
    )
    stack = auto.create_or_select_stack("probe", work_dir=str(project), opts=opts)
    stack.set_all_config({"renderDir": auto.ConfigValue(str(root / "probe-render"))})
    return stack


def test_non_compliant_config_is_refused(tmp_path: Path, engine_project: EngineProject) -> None:
    stack = _probe_stack(tmp_path, engine_project)
    stack.set_all_config(
        {
            "image": auto.ConfigValue("nginx:latest"),
            "bounded": auto.ConfigValue("false"),
            "privileged": auto.ConfigValue("true"),
        }
    )
    with pytest.raises(auto.errors.CommandError) as refused:
        stack.preview(policy_packs=[str(POLICY_PACK)], color="never")
    report = str(refused.value)
    for policy in ("images-pinned", "resources-bounded", "mandatory"):
        assert policy in report, f"{policy} not reported:\n{report}"
    assert "nginx:latest" in report

    # The same program is not refused by the engine itself: without the pack the preview succeeds,
    # so the refusal above came from the policy pack.
    result = stack.preview(color="never")
    assert result.change_summary.get(auto.OpType.CREATE, 0) >= 1, result.change_summary
