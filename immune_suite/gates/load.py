"""The load gate: runs `load/locustfile.py` headless in a subprocess and turns its outputs into a verdict.

Locust writes its CSV and JSON statistics, the locustfile writes the k6-style threshold results
(evaluated from locust's statistics) and one JSON line per HTTP response with the deployment colour the
service reported. The verdict takes the thresholds as measurements; the samples, split by colour, go to
the caller for canary-versus-stable analysis over the same window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from immune_suite.paths import LOAD_THRESHOLDS, LOCUSTFILE, REPO_ROOT
from immune_suite.verdict import Artifact, Measurement, Status, Verdict

GATE = "load"
THRESHOLDS = LOAD_THRESHOLDS


@dataclass(frozen=True)
class Sample:
    """One HTTP request of a load run: latency in milliseconds, success, start time in Unix seconds."""

    latency_ms: float
    ok: bool
    at: float  # Unix time the request started


@dataclass(frozen=True)
class LoadRun:
    """A load run's verdict and its samples by colour (`blue`, `green`, `baseline`, `unattributed`, ...)."""

    verdict: Verdict
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def samples_between(self, start: float, end: float) -> dict[str, list[Sample]]:
        """The samples by colour that started in [`start`, `end`), both in Unix seconds."""
        return {c: [s for s in ss if start <= s.at < end] for c, ss in self.samples.items()}


def read_samples(path: Path) -> dict[str, list[Sample]]:
    """The samples file written by immune_load.run (JSON lines), by colour; {} when there is no file.

    A line cut short (locust killed mid-write) is skipped; a complete line without `latency_ms`, `ok` or
    `at` raises KeyError (the writer and this reader disagree: fail loudly rather than lose samples).
    """
    by_color: dict[str, list[Sample]] = {}
    if not path.exists():
        return by_color
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short when locust was killed
            sample = Sample(float(row["latency_ms"]), bool(row["ok"]), float(row["at"]))
            by_color.setdefault(str(row.get("color") or "unknown"), []).append(sample)
    return by_color


def locust_command(
    base_url: str, out_dir: Path, shape: str, duration_s: float, locustfile: Path = LOCUSTFILE
) -> list[str]:
    """The argv of a headless locust run of `shape` for `duration_s` seconds against `base_url`, its CSV,
    JSON stats, threshold results (`thresholds.json`) and samples (`samples.jsonl`) under `out_dir`."""
    # The shape stops at duration_s (locust ignores --run-time with a shape); run_load has a deadline.
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        base_url,
        "--load-shape",
        shape,
        "--load-duration",
        str(duration_s),
        "--csv",
        str(out_dir / "locust"),
        "--json-file",
        str(out_dir / "locust-stats"),
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
        "--result-file",
        str(out_dir / "thresholds.json"),
        "--samples-file",
        str(out_dir / "samples.jsonl"),
    ]


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def run_load(
    base_url: str,
    token: str,
    out_dir: Path,
    shape: str,
    duration_s: float,
    progress: Callable[..., None],
    extra_env: dict[str, str] | None = None,
    thresholds: Path = THRESHOLDS,
) -> LoadRun:
    """Run one load scenario against `base_url` and judge it against the k6-style thresholds.

    `duration_s` is the scenario's length in seconds; locust is killed 90 s after it if still running.
    The token reaches locust through the environment only. The verdict FAILs when locust leaves no
    threshold results, a threshold fails, an abort-on-fail threshold stopped the run, or locust exits
    other than 0/1; its measurements are the thresholds (latencies in ms, rates as fractions).
    `progress(message, stage=...)` receives a line every few seconds.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat()
    # The token travels in the environment, never on a command line that `ps` shows.
    env = {
        **os.environ,
        **(extra_env or {}),
        "IMMUNE_API_TOKEN": token,
        "IMMUNE_LOAD_THRESHOLDS": str(thresholds),
    }
    command = locust_command(base_url, out_dir, shape, duration_s)
    progress(f"{shape} for {duration_s:.0f}s against {base_url}", stage=GATE)
    log_path = out_dir / "locust.log"
    began = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(  # noqa: S603
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
        deadline = began + duration_s + 90
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                break
            time.sleep(min(5.0, max(duration_s / 6, 0.5)))
            sent = _count_lines(out_dir / "samples.jsonl")
            progress(f"{time.monotonic() - began:.0f}s, {sent} requests", stage=GATE)
        returncode = process.wait()
    samples = read_samples(out_dir / "samples.jsonl")
    verdict = _verdict(out_dir, returncode, started, log_path, samples)
    progress(f"{verdict.status.value} - {verdict.summary}", stage=GATE)
    return LoadRun(verdict=verdict, samples=samples)


def _verdict(
    out_dir: Path, returncode: int, started: str, log_path: Path, samples: dict[str, list[Sample]]
) -> Verdict:
    artifacts = [
        Artifact.of(p, kind)
        for p, kind in (
            (out_dir / "thresholds.json", "json"),
            (out_dir / "locust-stats.json", "json"),
            (out_dir / "locust_stats.csv", "csv"),
            (out_dir / "samples.jsonl", "jsonl"),
            (log_path, "log"),
        )
        if p.exists()
    ]
    result_path = out_dir / "thresholds.json"
    if not result_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        return Verdict(
            gate=GATE,
            status=Status.FAIL,
            started_at=started,
            artifacts=artifacts,
            summary=f"locust exited {returncode} without threshold results",
            details={"log_tail": tail},
        )
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    measurements = [
        Measurement(
            name=r["name"],
            value=r["value"],
            threshold=r["limit"],
            comparator=r["comparator"],
            passed=bool(r["passed"]),
            unit=r["unit"],
            abort_on_fail=bool(r["abort_on_fail"]),
        )
        for r in result["thresholds"]
    ]
    aborted = result.get("aborted")
    status = Verdict.status_from(measurements)
    if aborted or returncode not in (0, 1):
        status = Status.FAIL
    failed = [m.name for m in measurements if not m.passed]
    totals = result.get("totals", {})
    if aborted:
        broken = ", ".join(t["name"] for t in aborted["thresholds"])
        summary = f"aborted after {aborted['at_s']:.1f}s: {broken}"
    elif failed:
        summary = "thresholds failed: " + ", ".join(failed)
    else:
        summary = (
            f"{totals.get('requests', 0)} requests, p95 {_fmt(totals.get('p95_ms'))} ms, "
            f"p99 {_fmt(totals.get('p99_ms'))} ms, {totals.get('failures', 0)} failed"
        )
    return Verdict(
        gate=GATE,
        status=status,
        summary=summary,
        measurements=measurements,
        artifacts=artifacts,
        started_at=started,
        details={
            "shape": result.get("shape"),
            "totals": totals,
            "aborted": aborted,
            "locust_exit_code": returncode,
            "requests_by_color": {c: len(s) for c, s in samples.items()},
            "websocket_messages": result.get("websocket_messages", 0),
        },
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
