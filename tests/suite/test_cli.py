"""The CLI's contract: help, plan output, verify exit codes, usage errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from immune_suite.cli import _candidate, build_parser, main
from immune_suite.pipeline.exit_codes import ExitCode
from immune_suite.signing import load_or_create_private_key, sign_record
from immune_suite.source import SourceTree
from immune_suite.stack_config import load_stack


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in (
        "plan",
        "promote",
        "status",
        "abort",
        "rollback",
        "pause",
        "resume",
        "approve",
        "verify",
        "report",
    ):
        assert command in out
    assert "exit codes" in out


def test_plan_json_is_the_state_machine(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "local", "--json"]) == ExitCode.OK
    plan = json.loads(capsys.readouterr().out)
    assert plan["first_promotion"] is True  # nothing deployed in a fresh state dir
    assert [s["id"] for s in plan["steps"]][:3] == ["security", "deploy", "smoke"]
    assert all(s["on_fail"] in ("rollback", "rollback_failed") for s in plan["steps"])
    rollback = plan["steps"][-1]
    assert (rollback["id"], rollback["on_pass"], rollback["on_fail"]) == (
        "rollback",
        "rolled_back",
        "rollback_failed",
    )


def test_plan_with_a_stable_release_shows_the_stacks_canary_steps(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--stack", "local", "--with-stable", "--json"]) == ExitCode.OK
    plan = json.loads(capsys.readouterr().out)
    assert plan["first_promotion"] is False
    canaries = [s["id"] for s in plan["steps"] if s["id"].startswith("canary-")]
    assert canaries == [f"canary-{w}" for w in load_stack("local").canary.steps]
    assert main(["plan", "--stack", "local", "--first", "--json"]) == ExitCode.OK
    first = json.loads(capsys.readouterr().out)
    assert first["first_promotion"] is True and not any(s["id"].startswith("canary-") for s in first["steps"])


def test_verify_exit_codes(state_dir: Path, tmp_path: Path) -> None:
    record = sign_record({"run_id": "r", "outcome": "promoted"}, load_or_create_private_key())
    good = tmp_path / "good.json"
    good.write_text(json.dumps(record))
    assert main(["verify", str(good)]) == ExitCode.OK
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**record, "outcome": "rolled_back"}))
    assert main(["verify", str(bad)]) == ExitCode.VERIFY_FAILED


def test_unknown_stack_is_a_usage_error(state_dir: Path) -> None:
    assert main(["plan", "--stack", "no-such-stack"]) == ExitCode.USAGE


def test_candidate_env_must_be_immune_settings(state_dir: Path) -> None:
    assert main(["promote", "--stack", "local", "--candidate-env", "PATH=/tmp"]) == ExitCode.USAGE


def test_nothing_to_resume(state_dir: Path) -> None:
    assert main(["resume", "--stack", "local"]) == ExitCode.NOTHING_TO_DO


def _promote_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["promote", "--stack", "local", *extra])


SOURCE = SourceTree(ref="WORKTREE", commit="c" * 40, tree="t" * 40, version="cccccccccc")
DIGEST = "sha256:" + "ab" * 32


def test_image_stacks_promote_the_digest_ci_built(monkeypatch: pytest.MonkeyPatch) -> None:
    staging = load_stack("staging")
    assert _candidate(SOURCE, _promote_args("--image-digest", DIGEST), staging).digest == DIGEST
    monkeypatch.setenv("IMMUNE_IMAGE_DIGEST", DIGEST)
    assert _candidate(SOURCE, _promote_args(), staging).digest == DIGEST
    with pytest.raises(ValueError, match="sha256"):
        _candidate(SOURCE, _promote_args("--image-digest", "latest"), staging)


def test_the_local_stack_runs_the_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    local = load_stack("local")
    monkeypatch.setenv("IMMUNE_IMAGE_DIGEST", DIGEST)  # a CI shell's setting does not apply here
    assert _candidate(SOURCE, _promote_args(), local).digest == SOURCE.digest
    with pytest.raises(ValueError, match="image-based"):
        _candidate(SOURCE, _promote_args("--image-digest", DIGEST), local)


def test_a_target_that_cannot_start_is_exit_8_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad case: the local stack's ports are taken; the user gets exit 8 and the reason, no traceback."""
    from immune_suite import cli
    from immune_suite.targets.base import TargetError

    def failing(args: object) -> int:
        raise TargetError("timed out after 15s waiting for HAProxy admin socket (ports 18080-18084 taken?)")

    monkeypatch.setattr(cli, "cmd_status", failing)
    assert cli.main(["status", "--stack", "local"]) == 8
    err = capsys.readouterr().err
    assert err.startswith("immune-suite: target error: timed out") and "Traceback" not in err
