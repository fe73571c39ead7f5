"""Load for the Active Immune Core service: `locust -f load/locustfile.py --host https://...`.

Users: sensors posting event batches, analysts querying threats and stats, and WebSocket subscribers on
`/ws/stream`. The scenario (baseline, peak, stress, spike, soak) comes from `immune_load.shapes`; the
options, the k6-style thresholds (`load/thresholds.yaml`, abort-on-fail during the run, all of them at the
end into `--result-file` and the exit code) and the `--samples-file` writer come from `immune_load.run`
(importing it registers its locust listeners).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import websocket
from immune_load import shapes
from immune_load.locust_metrics import WEBSOCKET_REQUEST_TYPE
from immune_load.run import STATE, auth_headers, on_event, options_of
from locust import LoadTestShape, User, between, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from immune_suite.gates import sample_events


@on_event(events.init)
def _subscribers(environment: Environment, **_: Any) -> None:
    options = options_of(environment)
    if options is not None:  # None: imported as a library, not run by locust
        StreamSubscriber.fixed_count = options.ws_subscribers


class EventIngestor(FastHttpUser):
    """A sensor posting batches of events."""

    weight = 3

    def wait_time(self) -> float:
        return float(constant_throughput(options_of(self.environment).user_rps)(self))

    def on_start(self) -> None:
        self.rng = random.Random()  # noqa: S311 - traffic generation
        self.headers = auth_headers(self.environment)

    @task
    def post_batch(self) -> None:
        batch = sample_events.generate(options_of(self.environment).batch_size, self.rng)
        with self.client.post(
            "/api/v1/events",
            json={"events": batch},
            headers=self.headers,
            name="/api/v1/events",
            catch_response=True,
        ) as response:
            if response.status_code not in (200, 201, 202):
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")


class ThreatAnalyst(FastHttpUser):
    """A SOC analyst's dashboard: recent threats, aggregate statistics."""

    weight = 1

    def wait_time(self) -> float:
        return float(constant_throughput(options_of(self.environment).user_rps)(self))

    def on_start(self) -> None:
        self.headers = auth_headers(self.environment)

    @task(3)
    def recent_threats(self) -> None:
        self.client.get("/api/v1/threats?limit=20", headers=self.headers, name="/api/v1/threats")

    @task(1)
    def stats(self) -> None:
        self.client.get("/api/v1/stats", headers=self.headers, name="/api/v1/stats")


class StreamSubscriber(User):
    """Holds a WebSocket on /ws/stream and reads what the service pushes (threat detections)."""

    fixed_count = 2
    wait_time = between(1, 2)

    def on_start(self) -> None:
        self.socket: websocket.WebSocket | None = None

    def _url(self) -> str:
        base = urlsplit(self.host or "")
        scheme = "wss" if base.scheme == "https" else "ws"
        return urlunsplit((scheme, base.netloc, base.path.rstrip("/") + "/ws/stream", "", ""))

    def _connect(self) -> None:
        started = time.perf_counter()
        exception: BaseException | None = None
        try:
            # The token goes in a header: the service refuses (and never logs) a ?token= query.
            token = options_of(self.environment).api_token
            self.socket = websocket.create_connection(
                self._url(), timeout=5, header=[f"Authorization: Bearer {token}"]
            )
        except (OSError, websocket.WebSocketException) as exc:
            exception, self.socket = exc, None
        self.environment.events.request.fire(
            request_type=WEBSOCKET_REQUEST_TYPE,
            name="/ws/stream connect",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )

    @task
    def listen(self) -> None:
        if self.socket is None:
            self._connect()
            return
        self.socket.settimeout(1.0)
        try:
            while True:
                message = self.socket.recv()
                if not message:
                    break
                STATE.ws_messages += 1
        except websocket.WebSocketTimeoutException:
            return  # quiet stream; keep the connection and listen again
        except (OSError, websocket.WebSocketException) as exc:
            self.environment.events.request.fire(
                request_type=WEBSOCKET_REQUEST_TYPE,
                name="/ws/stream receive",
                response_time=0,
                response_length=0,
                exception=exc,
                context={},
            )
        self.socket = None

    def on_stop(self) -> None:
        if self.socket is not None:
            self.socket.close()


class ScenarioShape(LoadTestShape):
    """The scenario chosen by the options above (see immune_load/shapes.py)."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None, "locust binds the runner before the first tick"
        options = options_of(self.runner.environment)
        settings = shapes.ShapeSettings.of(
            options.load_shape,
            options.load_duration,
            options.rps_scale,
            options.user_rps,
            options.ws_subscribers,
        )
        # LoadTestShape.get_run_time is unannotated; it returns the seconds since the test started.
        run_time_s = cast(Callable[[], float], self.get_run_time)()
        return shapes.tick(settings, run_time_s)
