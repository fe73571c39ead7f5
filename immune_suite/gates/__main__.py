"""Run one gate by hand or from CI: `python -m immune_suite.gates security|load|chaos ...`.

The promotion pipeline calls the same functions; this entry point exists so a gate can be run alone
(CI runs the security gate before building the image). The API token is read from IMMUNE_API_TOKEN,
never from the command line. Exit status: 0 when the verdict passed (or warned), 1 when it failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from immune_suite.paths import LOAD_THRESHOLDS as THRESHOLDS
from immune_suite.paths import REPO_ROOT
from immune_suite.progress import ConsoleProgress, JsonLinesProgress
from immune_suite.verdict import Verdict


def _print(verdict: Verdict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        print(f"{verdict.gate}: {verdict.status.value} - {verdict.summary}")
        for m in verdict.measurements:
            mark = "ok  " if m.passed else "FAIL"
            print(f"  {mark} {m.name} = {m.value} {m.unit} ({m.comparator} {m.threshold})")
    return 0 if verdict.passed else 1


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run one gate (`security`, `load` or `chaos`) from the command line, write `<gate>-verdict.json`
    under `--out` and print the verdict; returns 0 when it passed, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m immune_suite.gates",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true", help="verdict as JSON on stdout; progress goes to stderr as JSON lines"
    )
    sub = parser.add_subparsers(dest="gate", required=True)
    security = sub.add_parser("security", help="bandit, pip-audit, detect-secrets, checkov (+ schemathesis)")
    security.add_argument("--source", type=Path, default=Path.cwd(), help="the candidate's tree")
    security.add_argument("--out", type=Path, required=True, help="artifact directory")
    security.add_argument("--url", help="candidate base URL to fuzz with schemathesis")
    security.add_argument(
        "--accept-stale-advisories",
        metavar="REASON",
        help="accept an advisory snapshot older than the age limit for this run "
        "(recorded in the verdict, which becomes WARN)",
    )
    load = sub.add_parser("load", help="one locust scenario against a URL")
    load.add_argument("--url", required=True, help="base URL of the service under load")
    load.add_argument("--out", type=Path, required=True, help="artifact directory")
    load.add_argument("--shape", default="baseline", help="load shape (load/immune_load/shapes.py)")
    load.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    load.add_argument(
        "--thresholds",
        type=_existing_file,
        default=THRESHOLDS,
        help=f"k6-style thresholds YAML (default: {THRESHOLDS.relative_to(REPO_ROOT)})",
    )
    chaos = sub.add_parser("chaos", help="Chaos Toolkit experiments with a stack's chaos config")
    chaos.add_argument("--config", type=Path, required=True, help="JSON: base_url, candidate_url, ...")
    chaos.add_argument("--out", type=Path, required=True)
    chaos.add_argument("experiments", nargs="+")
    args = parser.parse_args(argv)

    progress = JsonLinesProgress() if args.json else ConsoleProgress()
    token = os.environ.get("IMMUNE_API_TOKEN") or None
    if args.gate == "security":
        from immune_suite.gates.advisories import ACCEPT_STALE_ENV
        from immune_suite.gates.security import run_security_gate

        if args.accept_stale_advisories:
            os.environ[ACCEPT_STALE_ENV] = args.accept_stale_advisories  # read by the pip-audit step
        verdict = run_security_gate(args.source, args.out, args.url, token, progress)
    elif args.gate == "load":
        from immune_suite.gates.load import run_load

        verdict = run_load(
            args.url, token or "", args.out, args.shape, args.duration, progress, thresholds=args.thresholds
        ).verdict
    else:
        from immune_suite.gates.chaos import run_chaos_gate

        config = json.loads(args.config.read_text(encoding="utf-8"))
        if token:
            config["api_token"] = token
        verdict = run_chaos_gate(config, args.out, args.experiments, progress)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{verdict.gate}-verdict.json").write_text(
        json.dumps(verdict.to_dict(), indent=2), encoding="utf-8"
    )
    return _print(verdict, args.json)


if __name__ == "__main__":
    sys.exit(main())
