"""The local stack for the end-to-end tests (tests/suite/targets/local/test_e2e_local.py,
tests/suite/test_e2e_rollback_failed.py, tests/suite/metrics/test_e2e_metrics.py, tests/suite/test_e2e_ci.py):
a two-release snapshot of this working tree, a private port block, the stack driven through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from immune_suite.paths import REPO_ROOT
from immune_suite.source import resolve_source
from immune_suite.stack_config import load_stack
from immune_suite.targets.local import LocalTarget
from tests.support.ports import free_port_block


def e2e_marks(timeout_s: int) -> list[pytest.MarkDecorator]:
    """The local-stack e2e modules' marks, with a whole-test timeout of `timeout_s` seconds. One pytest-xdist
    group for all of them: each runs whole stacks whose canary analysis compares latencies, so they run one
    after another, never beside each other."""
    return [
        pytest.mark.e2e,
        pytest.mark.integration,
        pytest.mark.slow,
        pytest.mark.timeout(timeout_s),
        pytest.mark.xdist_group("local-stack-e2e"),
        pytest.mark.serial,
    ]


E2E_MARKS = e2e_marks(900)

# The canary analysis of the e2e stacks, tuned for a loaded 2-core test machine (copy before changing):
# - it reaches a fraction of the target rate: 12 canary requests at 10 % are still plenty to see a
#   400 ms shift against hundreds of stable ones;
# - the same holds for the evidence the analysis wants before it passes a step: a tail percentile from
#   12 requests (the SLO is 6 s, far above anything but a fault), and an error ratio "below 35 %" at
#   99 % confidence, which 12 clean requests give (Clopper-Pearson); the defaults (100 requests for
#   p99, 5 %) would keep a 10 % step inconclusive there;
# - instances differ in background work (the leader's jobs, which Kafka partitions each consumes),
#   canary and fresh baseline alike: seen up to +60 ms (x1.7) between two equal releases, so only a
#   shift of 100 ms and 100 % counts as a regression; the injected faults add 400 ms.
LOADED_MACHINE_SLO: dict[str, float] = {"p95_ms": 3000, "p99_ms": 6000, "error_ratio": 0.01}
LOADED_MACHINE_COMPARISON: dict[str, float] = {
    "min_samples": 12,
    "p95_min_samples": 12,
    "p99_min_samples": 12,
    "error_detect_ratio": 0.35,
    "min_effect_ms": 100,
    "max_median_increase_ratio": 1.0,
}


def require_haproxy() -> None:
    """Fail (never skip) the test when HAProxy, the local stack's ingress, is not installed."""
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.fail(
            "haproxy is required for the local stack: apt-get install haproxy (scripts/main.sh does it)"
        )


def local_ports() -> dict[str, int]:
    """The `local:` ports of a stack config on a free block of 300: ingress, stable, preview, instances."""
    base = free_port_block(300)
    return {
        "ingress_port": base,
        "stable_port": base + 1,
        "preview_port": base + 2,
        "instance_base_port": base + 100,
    }


_CLI = [sys.executable, "-m", "immune_suite.cli"]


@dataclass
class E2EStack:
    root: Path
    repo: Path
    stack_file: Path
    env: dict[str, str]
    ports: dict[str, int]
    v1: str = ""  # commit of the first release
    v2: str = ""  # commit of the second release

    def promote_command(self, *args: str) -> list[str]:
        """The argv of `immune-suite promote` on this stack and repo plus `args`, for a run a test drives as
        a process of its own (to kill it, or to act while it runs)."""
        return [*_CLI, "promote", "--stack", str(self.stack_file), "--repo", str(self.repo), *args]

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        """`immune-suite <args>` in this stack's environment; `timeout` in seconds."""
        return subprocess.run(
            [*_CLI, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
        )

    def promote(self, *args: str) -> tuple[int, dict[str, Any]]:
        result = self.cli(
            "promote", "--stack", str(self.stack_file), "--repo", str(self.repo), "--json", *args
        )
        payload = json.loads(result.stdout) if result.stdout.strip() else {}
        if result.returncode not in (0, 3) or not payload:
            print(result.stderr[-6000:])
        return result.returncode, payload

    def target(self) -> LocalTarget:
        os.environ["IMMUNE_STATE_DIR"] = self.env["IMMUNE_STATE_DIR"]
        return LocalTarget(load_stack(str(self.stack_file)), repo=self.repo)

    def served(self, requests: int = 20) -> set[tuple[str, str]]:
        """(colour, version) pairs answering on the ingress."""
        seen = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{self.ports['ingress_port']}", timeout=5) as client:
            for _ in range(requests):
                response = client.get("/health/live")
                assert response.status_code == 200
                seen.add((response.headers["X-Immune-Color"], response.headers["X-Immune-Version"]))
        return seen


def snapshot_repo(destination: Path) -> tuple[str, str]:
    """A git repo with two commits of this working tree: v1 as is, v2 with one changed source file."""
    source = resolve_source(REPO_ROOT)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", source.tree], check=True, capture_output=True
    )
    destination.mkdir()
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
    git = ["git", "-C", str(destination), "-c", "user.name=e2e", "-c", "user.email=e2e@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "v1"], check=True)
    marker = destination / "app" / "immune_core" / "__init__.py"
    marker.write_text(marker.read_text() + "\n# e2e: the second release differs from the first\n")
    subprocess.run([*git, "commit", "-q", "-am", "v2"], check=True)

    def rev(ref: str) -> str:
        return subprocess.run(
            [*git, "rev-parse", ref], check=True, capture_output=True, text=True
        ).stdout.strip()

    return rev("HEAD~1"), rev("HEAD")


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except (httpx.HTTPError, AssertionError, OSError):
            pass  # not there yet
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def version_of(stack: E2EStack, ref: str) -> str:
    return resolve_source(stack.repo, ref).version


@contextmanager
def e2e_stack(
    root: Path, name: str, config: Callable[[dict[str, int]], dict[str, Any]], env: Mapping[str, str]
) -> Iterator[E2EStack]:
    """A local stack under `root`: two releases of this tree (`snapshot_repo`), a free port block, the stack
    file `<root>/<name>.yaml` holding `config(ports)`, and a private state dir (`<root>/state`) in an
    environment of this process's plus `env`. Brought `down` on exit, and IMMUNE_STATE_DIR (which
    `E2EStack.target` sets) restored. Fails (never skips) without HAProxy."""
    require_haproxy()
    v1, v2 = snapshot_repo(root / "repo")
    ports = local_ports()
    stack_file = root / f"{name}.yaml"
    stack_file.write_text(yaml.safe_dump(config(ports)))
    stack_env = {**os.environ, **env, "IMMUNE_STATE_DIR": str(root / "state")}
    stack = E2EStack(root, root / "repo", stack_file, stack_env, ports, v1, v2)
    previous = os.environ.get("IMMUNE_STATE_DIR")
    try:
        yield stack
    finally:
        stack.cli("down", "--stack", str(stack_file), timeout=120)
        if previous is None:
            os.environ.pop("IMMUNE_STATE_DIR", None)
        else:
            os.environ["IMMUNE_STATE_DIR"] = previous
