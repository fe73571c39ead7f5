"""The gate runners the pipeline calls, gathered so tests can hand in their own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from immune_suite.smoke import post_promotion_check, smoke_test
from immune_suite.verdict import Verdict


class LoadResult(Protocol):
    @property
    def verdict(self) -> Verdict: ...

    @property
    def samples(self) -> dict[str, list[Any]]: ...


SecurityGate = Callable[..., Verdict]  # (source_dir, out_dir, base_url, token, progress)
LoadGate = Callable[..., LoadResult]  # (base_url, token, out_dir, shape, duration_s, progress, extra_env=)
ChaosGate = Callable[..., Verdict]  # (config, out_dir, experiments, progress)
FuzzGate = Callable[..., Verdict]  # (base_url, token, out_dir, progress)
SmokeCheck = Callable[..., Verdict]  # (url, token, color, release, timeout_s, progress)
PostCheck = Callable[..., Verdict]  # (url, color, release, requests, progress)


@dataclass(frozen=True)
class Gates:
    security: SecurityGate
    load: LoadGate
    chaos: ChaosGate
    smoke: SmokeCheck = smoke_test
    post_check: PostCheck = post_promotion_check
    fuzz: FuzzGate | None = None


def default_gates() -> Gates:
    """The real gates (imported late: each pulls in its tool's libraries)."""
    from immune_suite.gates.chaos import run_chaos_gate
    from immune_suite.gates.load import run_load
    from immune_suite.gates.security import run_api_fuzz, run_security_gate

    return Gates(security=run_security_gate, load=run_load, chaos=run_chaos_gate, fuzz=run_api_fuzz)


def run_dir(root: Path, stack: str, run_id: str) -> Path:
    path = root / "runs" / stack / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path
