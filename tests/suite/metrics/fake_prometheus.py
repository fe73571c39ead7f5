"""A real local HTTP server that answers like Prometheus's HTTP API, or fails like a broken one.

`FakePrometheus.answer(query) -> value` decides each instant query's value: a float (one series),
None (empty result), or a `Reply` (any raw status/body). `mode` breaks every request: "slow" (sleeps
past the client's timeout), "5xx" (503), "malformed" (200, not JSON). `requests` records each query.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


def vector(value: float | str, at: float = 0.0, series: int = 1) -> Reply:
    result = [{"metric": {"n": str(i)}, "value": [at, str(value)]} for i in range(series)]
    return Reply(200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}))


@dataclass
class FakePrometheus:
    answer: Callable[[str], float | Reply | None] = lambda query: 1.0
    mode: str = "ok"
    slow_s: float = 2.0
    config_yaml: str = "scrape_configs: []\n"
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def reply(self, path: str, params: dict[str, str]) -> Reply:
        self.requests.append({"path": path, **params})
        if self.mode == "slow":
            time.sleep(self.slow_s)
        if self.mode == "5xx":
            return Reply(
                503, json.dumps({"status": "error", "errorType": "unavailable", "error": "overloaded"})
            )
        if self.mode == "malformed":
            return Reply(200, "<html>not json</html>")
        if path == "/api/v1/status/config":
            return Reply(200, json.dumps({"status": "success", "data": {"yaml": self.config_yaml}}))
        if path == "/api/v1/query_range":
            return Reply(
                200,
                json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "matrix",
                            "result": [{"metric": {}, "values": [[1.0, "NaN"], [2.0, "3"], [3.0, "4.5"]]}],
                        },
                    }
                ),
            )
        answer = self.answer(params.get("query", ""))
        if isinstance(answer, Reply):
            return answer
        if answer is None:
            return Reply(
                200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
            )
        return vector(answer, float(params.get("time", "0")))


@contextmanager
def serving(fake: FakePrometheus) -> Iterator[FakePrometheus]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            params = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            reply = fake.reply(parsed.path, params)
            body = reply.body.encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (the slow mode's timeout)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
