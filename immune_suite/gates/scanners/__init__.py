"""One module per security tool; each runs its tool natively and returns a `ScanResult`.

A tool that could not run (missing data, crashed, unexpected output) returns a result with
`error` set: the security gate fails on it, it never counts as a clean scan.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from immune_suite.verdict import Artifact, Measurement


@dataclass(frozen=True)
class ScanResult:
    """What one security tool found: `findings` counted past the tool's own filters (None when it could
    not run, then `error` says why), judged against `allowed`; its report files as artifacts."""

    tool: str
    findings: int | None  # None when the tool could not run
    summary: str
    artifacts: list[Artifact] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    allowed: int = 0  # findings tolerated (the threshold)
    # Passed, but with something a reader must see (e.g. an old advisory snapshot accepted explicitly):
    # the gate's verdict becomes WARN and says it.
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Ran, and found no more than `allowed`."""
        return self.error is None and self.findings is not None and self.findings <= self.allowed

    def measurement(self) -> Measurement:
        """`<tool> findings` <= `allowed` as a verdict measurement (value None: the tool could not run)."""
        return Measurement(
            name=f"{self.tool} findings",
            value=None if self.findings is None else float(self.findings),
            threshold=float(self.allowed),
            comparator="<=",
            passed=self.passed,
        )

    def record(self, **extra: Any) -> dict[str, Any]:
        """What a verdict's details keep of this result: summary, error, findings, warnings, then `extra`
        (e.g. the tool's run time in seconds) and the tool's own details."""
        return {
            "summary": self.summary,
            "error": self.error,
            "findings": self.findings,
            "warnings": self.warnings,
            **extra,
            **self.details,
        }

    @classmethod
    def failed(
        cls,
        tool: str,
        error: str,
        artifacts: list[Artifact] | None = None,
        details: dict[str, Any] | None = None,
    ) -> ScanResult:
        """A result for a tool that could not run: no findings count, `error` set, so the gate fails."""
        return cls(
            tool=tool,
            findings=None,
            summary=f"{tool} could not run: {error}",
            error=error,
            artifacts=artifacts or [],
            details=details or {},
        )


def run_tool(
    command: Sequence[str],
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a scanner, keeping its combined output as a log artifact. A scanner past its time budget
    (`timeout_s` seconds) is killed and answers exit 124 with the reason, so its gate fails with it instead
    of crashing. Raises OSError (FileNotFoundError) when the tool's binary cannot be started."""
    try:
        completed = subprocess.run(  # noqa: S603 - fixed tool invocations, no shell
            list(command),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        completed = subprocess.CompletedProcess(
            list(command),
            124,
            _text(expired.stdout),
            _text(expired.stderr) + f"\nkilled: did not finish within its budget of {timeout_s:.0f}s",
        )
    log.write_text(
        f"$ {' '.join(command)}\nexit {completed.returncode}\n--- stdout\n{completed.stdout}"
        f"\n--- stderr\n{completed.stderr}",
        encoding="utf-8",
    )
    return completed


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return output or ""


def artifacts_of(*paths: tuple[Path, str]) -> list[Artifact]:
    """Artifacts for the (path, kind) pairs whose file exists; the others are left out."""
    return [Artifact.of(path, kind) for path, kind in paths if path.exists()]


def tail(text: str, limit: int = 600) -> str:
    """The last `limit` characters of `text`, stripped: a tool's output quoted in a summary."""
    return text.strip()[-limit:]
