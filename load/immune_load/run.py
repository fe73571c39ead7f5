"""One locust run's bookkeeping, shared by the users of `load/locustfile.py`.

Importing this module registers locust event listeners (locust's `events` is process-wide): our command
line options, the k6-style thresholds (`load/thresholds.yaml`, see `immune_load.thresholds`) checked every
second for `abortOnFail` and evaluated at the end into `--result-file` and the exit code (1 when any
threshold failed), and the `--samples-file` writer.

Every HTTP response is written to `--samples-file` (JSON lines: colour, latency_ms, ok, at, name,
status, served_by), so a canary analysis can compare colours over the same window. Behind an ingress
that names the server it chose (`IMMUNE_LOAD_ATTRIBUTION`, see immune_suite/gates/attribution.py) the
colour is the ingress's, whatever the service answered (or failed to); a response it did not
attribute is `unattributed`. Without that setting (a service reached directly) the colour is the one
the service reported in `X-Immune-Color`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

import gevent
from locust import events
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.event import EventHook
from locust.runners import WorkerRunner

from immune_load import shapes
from immune_load.locust_metrics import WEBSOCKET_REQUEST_TYPE, LocustStatsSource
from immune_load.thresholds import Threshold, ThresholdResult, broken_aborts, evaluate, load_thresholds
from immune_suite.gates.attribution import UNATTRIBUTED, Attribution

LOAD_DIR = Path(__file__).resolve().parents[1]  # load/, where thresholds.yaml sits
COLOR_HEADER = "X-Immune-Color"

_Listener = TypeVar("_Listener", bound=Callable[..., None])


def on_event(hook: EventHook) -> Callable[[_Listener], _Listener]:
    """`@hook.add_listener` that keeps the listener's signature: locust's `EventHook.add_listener` is
    unannotated, so using it as a decorator would make every listener untyped to mypy."""

    def register(listener: _Listener) -> _Listener:
        cast(Callable[[_Listener], object], hook.add_listener)(listener)
        return listener

    return register


@on_event(events.init_command_line_parser)
def _options(parser: LocustArgumentParser) -> None:
    group = parser  # extra keywords (env_var, is_secret) work on the parser, not on argument groups
    group.add_argument(
        "--load-shape",
        env_var="IMMUNE_LOAD_SHAPE",
        default="baseline",
        choices=sorted(shapes.SCENARIOS),
        help="load scenario",
    )
    group.add_argument(
        "--load-duration",
        env_var="IMMUNE_LOAD_DURATION_S",
        type=float,
        default=None,
        help="scenario duration in seconds (default per scenario)",
    )
    group.add_argument("--rps-scale", env_var="IMMUNE_LOAD_RPS_SCALE", type=float, default=1.0)
    group.add_argument("--user-rps", env_var="IMMUNE_LOAD_USER_RPS", type=float, default=5.0)
    group.add_argument("--ws-subscribers", env_var="IMMUNE_LOAD_WS_SUBSCRIBERS", type=int, default=2)
    group.add_argument("--batch-size", env_var="IMMUNE_LOAD_BATCH_SIZE", type=int, default=20)
    group.add_argument(
        "--thresholds", env_var="IMMUNE_LOAD_THRESHOLDS", default=str(LOAD_DIR / "thresholds.yaml")
    )
    group.add_argument("--samples-file", env_var="IMMUNE_LOAD_SAMPLES", default="")
    group.add_argument("--result-file", env_var="IMMUNE_LOAD_RESULT", default="")
    group.add_argument(
        "--api-token",
        env_var="IMMUNE_API_TOKEN",
        default="",
        is_secret=True,
        help="bearer token (prefer the environment variable)",
    )


class RunState:
    """What this locust process learns while it runs: thresholds, the abort reason, the samples file."""

    def __init__(self) -> None:
        self.thresholds: list[Threshold] = []
        self.aborted: list[ThresholdResult] = []
        self.aborted_at_s: float | None = None
        self.started_at = 0.0
        self.samples: TextIO | None = None
        self.ws_messages = 0
        self.attribution: Attribution | None = None


STATE = RunState()


def options_of(environment: Environment) -> Any:
    """The parsed locust options (ours above included), or None when imported as a library."""
    return environment.parsed_options


@on_event(events.init)
def _configure(environment: Environment, **_: Any) -> None:
    options = options_of(environment)
    if options is None:  # imported as a library, not run by locust
        return
    STATE.thresholds = load_thresholds(Path(options.thresholds))
    STATE.attribution = Attribution.from_env()
    if options.samples_file and not isinstance(environment.runner, WorkerRunner):
        STATE.samples = Path(options.samples_file).open("w", encoding="utf-8")  # closed on quit


@on_event(events.request)
def _record_sample(
    request_type: str,
    name: str,
    response_time: float | None,
    response: Any = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    if STATE.samples is None or request_type == WEBSOCKET_REQUEST_TYPE:
        return
    headers = getattr(response, "headers", None) or {}
    attribution = STATE.attribution
    if attribution is not None:
        color, served_by = attribution.color_of(headers), headers.get(attribution.header)
    else:
        color, served_by = headers.get(COLOR_HEADER) or "unknown", None
    status = getattr(response, "status_code", None)
    sample = {
        "color": color or UNATTRIBUTED,
        "latency_ms": response_time or 0.0,
        "ok": exception is None,
        "at": start_time or time.time(),
        "name": name,
        "status": status,
        "served_by": served_by,
    }
    STATE.samples.write(json.dumps(sample) + "\n")


def _watch_abort_thresholds(environment: Environment) -> None:
    source = LocustStatsSource(environment.stats)
    while True:
        gevent.sleep(1.0)
        elapsed = time.time() - STATE.started_at
        broken = broken_aborts(STATE.thresholds, source, elapsed)
        if broken:
            STATE.aborted, STATE.aborted_at_s = broken, elapsed
            names = ", ".join(f"{r.threshold.name}={r.value:.4g} ({r.threshold.expression})" for r in broken)
            print(f"abort-on-fail threshold broken after {elapsed:.1f}s: {names}", flush=True)
            assert environment.runner is not None
            environment.runner.quit()
            return


def _flush_samples() -> None:
    # Whoever follows the samples file (the gate's progress lines) sees it grow during the run.
    while (samples := STATE.samples) is not None and not samples.closed:
        samples.flush()
        gevent.sleep(2.0)


@on_event(events.test_start)
def _start(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # thresholds are watched where the statistics are aggregated
    STATE.started_at = time.time()
    if any(t.abort_on_fail for t in STATE.thresholds):
        gevent.spawn(_watch_abort_thresholds, environment)
    gevent.spawn(_flush_samples)


@on_event(events.quitting)
def _finish(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    source = LocustStatsSource(environment.stats)
    results = evaluate(STATE.thresholds, source)
    failed = [r for r in results if not r.passed]
    if STATE.samples is not None:
        STATE.samples.close()
        STATE.samples = None
    options = options_of(environment)
    if options is not None and options.result_file:
        document = {
            "shape": options.load_shape,
            "duration_s": time.time() - STATE.started_at if STATE.started_at else 0.0,
            "thresholds": [r.to_dict() for r in results],
            "aborted": {"at_s": STATE.aborted_at_s, "thresholds": [r.to_dict() for r in STATE.aborted]}
            if STATE.aborted
            else None,
            "totals": source.totals(),
            "websocket_messages": STATE.ws_messages,
        }
        Path(options.result_file).write_text(json.dumps(document, indent=2), encoding="utf-8")
    if failed or STATE.aborted:
        environment.process_exit_code = 1


def auth_headers(environment: Environment) -> dict[str, str]:
    """The bearer header for the API token option, or none when no token was given."""
    token = options_of(environment).api_token if options_of(environment) else ""
    return {"Authorization": f"Bearer {token}"} if token else {}
