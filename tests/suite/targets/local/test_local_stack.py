"""The local stack's generated configuration and release builds (no processes started here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from immune_suite.source import WORKTREE, resolve_source
from immune_suite.stack_config import LocalTargetConfig
from immune_suite.targets.base import Color, TrafficState
from immune_suite.targets.local.dependencies import parse_env_lines
from immune_suite.targets.local.haproxy import attribution, color_weights, render_config, render_roles
from immune_suite.targets.local.layout import StackLayout
from immune_suite.targets.local.releases import build_release, service_binary
from immune_suite.targets.local.supervisor import ProgramSpec, render_program
from tests.suite.targets.local.support import locked_build_backend

LAYOUT = StackLayout(Path("/state/local-stack/x"), LocalTargetConfig(instance_base_port=20000), replicas=2)


def test_weights_split_traffic_between_colours() -> None:
    assert color_weights(TrafficState(Color.BLUE, 10)) == {"blue": 90, "green": 10, "baseline": 0}
    assert color_weights(TrafficState(Color.GREEN, 0)) == {"green": 100, "blue": 0, "baseline": 0}


def test_a_running_baseline_takes_the_canarys_share_out_of_stables() -> None:
    assert color_weights(TrafficState(Color.BLUE, 10, 10)) == {"blue": 80, "green": 10, "baseline": 10}
    assert color_weights(TrafficState(Color.BLUE, 50, 50)) == {"blue": 0, "green": 50, "baseline": 50}


def test_haproxy_config_has_weighted_ingress_and_role_frontends() -> None:
    config = render_config(LAYOUT, TrafficState(Color.BLUE, 10, 10))
    assert "server blue-0 127.0.0.1:20010 check weight 80" in config
    assert "server green-1 127.0.0.1:20021 check weight 10" in config
    assert "server baseline-1 127.0.0.1:20031 check weight 10" in config
    assert "stats socket /state/local-stack/x/haproxy.sock mode 600 level admin" in config
    assert "map(/state/local-stack/x/roles.map,blue)" in config
    assert render_roles(TrafficState(Color.BLUE, 10)) == "stable blue\npreview green\n"


def test_every_frontend_names_the_server_it_chose_and_the_ingress_never_redispatches() -> None:
    config = render_config(LAYOUT, TrafficState(Color.BLUE, 10))
    frontends = config.split("\nfrontend ")[1:]
    assert [f.split()[0] for f in frontends] == ["ingress", "stable", "preview", "baseline", "gateway"]
    for frontend in frontends:
        assert 'http-after-response set-header X-Immune-Served-By "%b/%s"' in frontend.split("\n\n")[0]
    assert "bind 127.0.0.1:18083" in config  # baseline entry point: ingress port + 3 by default
    assert "bind 127.0.0.1:18084" in config  # the API gateway: ingress port + 4 by default
    # The canary's path and its references' paths are measured alike (one request per connection).
    measured = {f.split()[0] for f in frontends if "option httpclose" in f.split("\n\n")[0]}
    assert measured == {"ingress", "stable", "baseline"}
    ingress_backend = config.split("\nbackend ingress\n")[1].split("\n\n")[0]
    # A failed request on the candidate is its own failure, never quietly served by another colour.
    assert "no option redispatch" in ingress_backend
    assert "retry-on conn-failure\n" in ingress_backend  # a dropped request is not retried into hiding


def test_stack_attribution_maps_every_server_to_its_group() -> None:
    rule = attribution(LAYOUT)
    assert rule.servers == {
        "blue-0": "blue",
        "blue-1": "blue",
        "green-0": "green",
        "green-1": "green",
        "baseline-0": "baseline",
        "baseline-1": "baseline",
    }


def test_program_section_restarts_like_a_deployment() -> None:
    spec = ProgramSpec(
        "immune-blue-0",
        ["/venv/bin/python", "-m", "x", "--port", "1"],
        Path("/src"),
        environment={"IMMUNE_STATE_DIR": "/s"},
    )
    section = render_program(spec, Path("/logs"))
    assert "[program:immune-blue-0]" in section and "autorestart=true" in section
    assert "command=/venv/bin/python -m x --port 1" in section
    assert 'environment=IMMUNE_STATE_DIR="/s"' in section


def test_service_env_lines_are_parsed() -> None:
    text = "export IMMUNE_DATABASE_URL='postgresql://u:p@h:1/d'\n# comment\nIMMUNE_REDIS_URL=redis://h:2/0\nnoise\n"
    assert parse_env_lines(text) == {
        "IMMUNE_DATABASE_URL": "postgresql://u:p@h:1/d",
        "IMMUNE_REDIS_URL": "redis://h:2/0",
    }


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def test_release_is_the_exact_tree_with_its_own_console_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMMUNE_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    (repo / "pkg" / "demo").mkdir(parents=True)
    (repo / "pkg" / "demo" / "__init__.py").write_text(
        "def main() -> int:\n    print('demo says hi')\n    return 0\n"
    )
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0"\n[project.scripts]\nimmune-core = "demo:main"\n'
        '[tool.setuptools.packages.find]\nwhere = ["pkg"]\n'
    )
    (repo / "requirements.lock").write_text(locked_build_backend())  # a release installs only what is locked
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    (repo / "untracked.txt").write_text("part of the working tree")
    committed = resolve_source(repo, "HEAD")
    worktree = resolve_source(repo)
    assert worktree.ref == WORKTREE and worktree.tree != committed.tree
    assert git(repo, "status", "--porcelain") == "?? untracked.txt"  # our index untouched
    release = build_release(repo, worktree, tmp_path / "releases")
    assert (release / "src" / "untracked.txt").exists()
    output = subprocess.run([str(service_binary(release))], check=True, capture_output=True, text=True)
    assert output.stdout.strip() == "demo says hi"
    assert build_release(repo, worktree, tmp_path / "releases") == release  # cached by tree


def test_local_target_implements_the_target_protocol(state_dir: Path, tmp_path: Path) -> None:
    from immune_suite.stack_config import StackConfig
    from immune_suite.targets.base import Target
    from immune_suite.targets.local import LocalTarget

    assert isinstance(LocalTarget(StackConfig(name="protocol"), repo=tmp_path), Target)
