"""The gate runners the pipeline calls, gathered so tests can hand in their own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from immune_suite.smoke import post_promotion_check, smoke_test
from immune_suite.verdict import Status, Verdict


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


def run_api_fuzz(base_url: str, token: str | None, out_dir: Path, progress: Callable[..., None]) -> Verdict:
    """The security gate's API half: schemathesis against the candidate on the preview endpoint.

    The static scans ran on the source before deploying; fuzzing needs the candidate running, and
    preview receives no user traffic, so this still happens before anyone is exposed to it.
    """
    from immune_suite.gates.scanners import ScanResult, schemathesis

    progress(f"api fuzz: schemathesis against {base_url}", stage="api-fuzz")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = schemathesis.scan(base_url, token, out_dir)
    except Exception as error:  # a crashed fuzzer is a failed gate, never a pass
        result = ScanResult.failed(schemathesis.TOOL, f"{type(error).__name__}: {error}")
    status = Status.PASS if result.passed else Status.FAIL
    return Verdict(
        gate="api-fuzz",
        status=status,
        summary=result.summary,
        measurements=[result.measurement()],
        artifacts=list(result.artifacts),
        details={
            "tools": {
                result.tool: {
                    "summary": result.summary,
                    "error": result.error,
                    "findings": result.findings,
                    **result.details,
                }
            },
            "fuzzed_url": base_url,
        },
    )


def default_gates() -> Gates:
    """The real gates (imported late: each pulls in its tool's libraries)."""
    from immune_suite.gates.chaos import run_chaos_gate
    from immune_suite.gates.load import run_load
    from immune_suite.gates.security import run_security_gate

    return Gates(security=run_security_gate, load=run_load, chaos=run_chaos_gate, fuzz=run_api_fuzz)


def run_dir(root: Path, stack: str, run_id: str) -> Path:
    path = root / "runs" / stack / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path
