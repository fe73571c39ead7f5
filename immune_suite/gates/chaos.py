"""The chaos gate: runs Chaos Toolkit experiments against the candidate and judges their journals.

Each experiment runs natively, `chaos run --rollback-strategy always --var-file <config> --journal-path
<journal>`, so what the gate does can be repeated by hand. The config (URLs, supervisord config,
programs) goes in the var file; the API token and the dependency services' environment go in the
process environment only, so no artifact holds a secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from immune_suite.gates.chaos_journal import JournalSummary, summarise
from immune_suite.paths import CHAOS_DIR, CHAOS_EXPERIMENTS_DIR, REPO_ROOT
from immune_suite.verdict import Artifact, Measurement, Status, Verdict

GATE = "chaos"
EXPERIMENTS_DIR = CHAOS_EXPERIMENTS_DIR
SECRET_KEYS = frozenset({"api_token", "services_env"})
EXPERIMENT_TIMEOUT_S = 600


def resolve_experiment(name: str) -> Path:
    """A path to an experiment file, or a name looked up under chaos/experiments/{local,kubernetes}/.

    Raises FileNotFoundError when neither finds one.
    """
    path = Path(name)
    if path.suffix in (".json", ".yaml", ".yml") and path.exists():
        return path.resolve()
    for flavour in ("local", "kubernetes"):
        candidate = EXPERIMENTS_DIR / flavour / f"{name}.json"
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no chaos experiment named {name!r} under {EXPERIMENTS_DIR}")


def write_var_file(config: dict[str, Any], path: Path) -> Path:
    """Write `{"configuration": config}` for `chaos run --var-file`, leaving out the secret keys
    (`api_token`, `services_env`: they travel in the environment); returns `path`."""
    public = {k: v for k, v in config.items() if k not in SECRET_KEYS}
    path.write_text(json.dumps({"configuration": public}, indent=2, default=str), encoding="utf-8")
    return path


def chaos_environment(config: dict[str, Any]) -> dict[str, str]:
    """The `chaos` process's environment: ours, plus the dependency services' variables
    (`config["services_env"]`), IMMUNE_API_TOKEN, and a PYTHONPATH that finds immune_chaos."""
    env = {**os.environ}
    env.update({str(k): str(v) for k, v in (config.get("services_env") or {}).items()})
    env["IMMUNE_API_TOKEN"] = str(config.get("api_token") or "")
    # immune_chaos importable even where the project is not installed (a bare checkout).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHAOS_DIR), str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def chaos_command(experiment: Path, var_file: Path, journal: Path, log: Path) -> list[str]:
    """The argv of one native `chaos run` (rollback strategy `always`), repeatable by hand."""
    binary = Path(sys.executable).parent / "chaos"
    return [
        str(binary) if binary.exists() else "chaos",
        "--no-version-check",
        "--log-file",
        str(log),
        "run",
        "--rollback-strategy",
        "always",
        "--var-file",
        str(var_file),
        "--journal-path",
        str(journal),
        str(experiment),
    ]


def run_experiment(
    experiment: Path, name: str, var_file: Path, env: dict[str, str], out_dir: Path
) -> tuple[JournalSummary | None, list[Artifact], str | None]:
    """Run one experiment (at most EXPERIMENT_TIMEOUT_S seconds) and summarise its journal.

    Returns (summary, artifacts, error): the summary is None and `error` says why when `chaos` timed out or
    left no journal. The journal, the chaos log and the console output are written under `out_dir` as
    `<name>-journal.json`, `<name>.log` and `<name>-console.log`.
    """
    journal, log, console = (
        out_dir / f"{name}-journal.json",
        out_dir / f"{name}.log",
        out_dir / f"{name}-console.log",
    )
    try:
        completed = subprocess.run(  # noqa: S603 - the chaos CLI with our own arguments
            chaos_command(experiment, var_file, journal, log),
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=EXPERIMENT_TIMEOUT_S,
            check=False,
        )
        console.write_text(completed.stdout + completed.stderr, encoding="utf-8")
        error = (
            None
            if journal.exists()
            else f"chaos exited {completed.returncode} without a journal: "
            + (completed.stderr.strip()[-400:])
        )
    except subprocess.TimeoutExpired:
        error = f"timed out after {EXPERIMENT_TIMEOUT_S}s"
    artifacts = [
        Artifact.of(p, kind) for p, kind in ((journal, "json"), (log, "log"), (console, "log")) if p.exists()
    ]
    if error:
        return None, artifacts, error
    return summarise(json.loads(journal.read_text(encoding="utf-8")), name), artifacts, None


def run_chaos_gate(
    config: dict[str, Any], out_dir: Path, experiments: list[str], progress: Callable[..., None]
) -> Verdict:
    """The chaos gate's verdict over `experiments` (names or paths, run one after another).

    PASS only when every experiment ran and passed (see chaos_journal.summarise); no experiment at all, an
    unknown name, a run without a journal and a failed experiment each FAIL it. Measurements: one
    `<name>: passed` (1.0/0.0) per experiment plus its recovery figures in seconds; details carry the
    timeline (one dict per experiment). `progress(message, stage=...)` receives one line per step.
    """
    started = datetime.now(UTC).isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not experiments:
        return Verdict(
            gate=GATE, status=Status.FAIL, summary="no chaos experiments were given", started_at=started
        )
    var_file = write_var_file(config, out_dir / "chaos-config.json")
    env = chaos_environment(config)
    measurements: list[Measurement] = []
    artifacts: list[Artifact] = [Artifact.of(var_file, "json")]
    timeline: list[dict[str, Any]] = []
    failures: list[str] = []
    for name in experiments:
        try:
            path = resolve_experiment(name)
        except FileNotFoundError as exc:
            failures.append(f"{name}: {exc}")
            measurements.append(Measurement(f"{name}: passed", None, None, "info", False))
            continue
        name = path.stem if os.sep in name else name  # a file given by path: named by its stem
        progress(f"running {name}", stage=GATE)
        summary, produced, error = run_experiment(path, name, var_file, env, out_dir)
        artifacts += produced
        if summary is None:
            failures.append(f"{name}: {error}")
            measurements.append(Measurement(f"{name}: passed", None, None, "info", False))
            progress(f"{name}: FAIL - {error}", stage=GATE)
            continue
        measurements.append(
            Measurement(f"{name}: passed", 1.0 if summary.passed else 0.0, None, "info", summary.passed)
        )
        measurements += summary.measurements
        if not summary.passed:
            failures.append(f"{name}: " + "; ".join(summary.reasons()))
        timeline.append(
            {
                "experiment": name,
                "title": summary.title,
                "status": summary.status,
                "deviated": summary.deviated,
                "passed": summary.passed,
                "start": summary.start,
                "end": summary.end,
                "duration_s": summary.duration_s,
                "recovery": {m.name: m.value for m in summary.measurements},
                "activities": [a.to_dict() for a in summary.activities],
            }
        )
        values = ", ".join(f"{m.name.split(': ', 1)[1]}={m.value}" for m in summary.measurements)
        progress(
            f"{name}: {'ok' if summary.passed else 'FAIL'} ({summary.status}, "
            f"deviated={summary.deviated}{', ' + values if values else ''})",
            stage=GATE,
        )
    passed = not failures
    summary_text = (
        f"{len(experiments)} experiments passed"
        if passed
        else f"{len(failures)} of {len(experiments)} experiments failed: " + " | ".join(failures)
    )
    return Verdict(
        gate=GATE,
        status=Status.PASS if passed else Status.FAIL,
        summary=summary_text,
        measurements=measurements,
        artifacts=artifacts,
        started_at=started,
        details={"timeline": timeline, "experiments": experiments},
    )
