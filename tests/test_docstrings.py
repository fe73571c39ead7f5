"""Public functions of the chaos activities, the gates, the suite's HTTP client (smoke) and the service's
external-service clients are documented with units and errors (tests/support/docstrings.py holds the rule;
docs/architecture.md, "House style")."""

from __future__ import annotations

from pathlib import Path

from immune_suite.paths import REPO_ROOT
from tests.support.docstrings import problems

# The public surface the rule covers: what `chaos discover` shows, what the pipeline calls, what talks HTTP
# (the suite's smoke client, the service's clients of the platform's services).
DOCUMENTED = (
    REPO_ROOT / "chaos" / "immune_chaos",
    REPO_ROOT / "immune_suite" / "gates",
    REPO_ROOT / "immune_suite" / "smoke.py",
    REPO_ROOT / "app" / "immune_core" / "clients",
)


def _modules() -> list[Path]:
    return sorted(p for root in DOCUMENTED for p in ([root] if root.is_file() else root.rglob("*.py")))


def test_the_documented_packages_keep_the_rule() -> None:
    modules = _modules()
    # The walk must reach the modules it is about, or an empty list would pass for a clean tree.
    assert REPO_ROOT / "chaos" / "immune_chaos" / "local.py" in modules
    assert REPO_ROOT / "immune_suite" / "gates" / "scanners" / "pip_audit.py" in modules
    assert REPO_ROOT / "app" / "immune_core" / "clients" / "base.py" in modules
    found = [
        problem
        for path in modules
        for problem in problems(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_ROOT)))
    ]
    assert found == []


def test_a_public_function_class_or_method_without_a_docstring_fails() -> None:
    source = '''
def activity(url: str) -> bool:
    return True


class Probe:
    """Documented."""

    def check(self) -> bool:
        return True
'''
    assert problems(source, "m.py") == [
        "m.py:2 activity: no docstring",
        "m.py:9 Probe.check: no docstring",
    ]


def test_private_and_nested_functions_are_not_public_surface() -> None:
    source = '''
def _helper(timeout_s: float) -> None:
    pass


def documented() -> None:
    """Does one thing."""

    def nested(delay_s: float) -> None:
        pass
'''
    assert problems(source, "m.py") == []


def test_a_time_or_size_needs_its_unit_in_words() -> None:
    bad = '''
def wait_ready(url: str, timeout_s: float = 5.0) -> bool:
    """Waits until `url` is ready or `timeout_s` passes (k8s style: the error's name)."""


def recovery_seconds(url: str) -> float:
    """How long recovery took."""
'''
    assert problems(bad, "m.py") == [
        "m.py:2 wait_ready: takes or returns a time/size (timeout_s) but names no unit",
        "m.py:6 recovery_seconds: takes or returns a time/size (return value) but names no unit",
    ]
    good = '''
def wait_ready(url: str, timeout_s: float | None = 5.0) -> bool:
    """Waits until `url` is ready or `timeout_s` seconds pass."""


def recovery_seconds(url: str) -> float:
    """How long recovery took, in seconds."""


def send(count: int, max_bytes: int) -> int:
    """Sends `count` events of at most `max_bytes` bytes each."""
'''
    assert problems(good, "m.py") == []


def test_an_error_raised_must_be_named() -> None:
    bad = '''
def stop(name: str) -> None:
    """Stops it."""
    if not name:
        raise ChaosActivityError("nothing to stop")
'''
    assert problems(bad, "m.py") == [
        "m.py:2 stop: raises ChaosActivityError but its docstring does not say so",
    ]
    good = '''
def stop(name: str) -> None:
    """Stops it; raises ChaosActivityError when nothing runs. A re-raise needs no mention."""
    try:
        pass
    except OSError:
        raise
    if not name:
        raise ChaosActivityError("nothing to stop")
'''
    assert problems(good, "m.py") == []
