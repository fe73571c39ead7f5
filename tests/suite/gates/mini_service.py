"""A small real HTTP service with the Active Immune Core API's shape, for gate tests.

Used when the gate under test needs a server whose behaviour the test controls (a latency or error
ratio switched on, a colour header): `python -m tests.gates.mini_service --port P` or `build_app()`.
It speaks the service contract from docs/architecture.md: bearer tokens, `X-Immune-Color`,
`/api/v1/events`, `/api/v1/stats`, `/api/v1/threats`, `/api/v1/coordination`, `/ws/stream`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    event_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)


class Batch(BaseModel):
    events: list[Event] = Field(min_length=1, max_length=500)


class Accepted(BaseModel):
    accepted: int


class Stats(BaseModel):
    events_accepted: int
    events_acknowledged: int
    events_stored: int
    events_processed: int


class Coordination(BaseModel):
    leader: str
    term: int
    is_leader: bool


class Dependency:
    """A TCP dependency (127.0.0.1:port) and the ways a service can mishandle its outage (chaos tests).

    never_recover: once seen down, the service stays unready (a client that never reconnects);
    dead_without: liveness fails while it is down (the process hangs or crashes without it);
    lose_without: events posted while it is down are acknowledged (202) but never stored.
    """

    def __init__(self, port: int, never_recover: bool, dead_without: bool, lose_without: bool) -> None:
        self.port, self.never_recover, self.dead_without, self.lose_without = (
            port,
            never_recover,
            dead_without,
            lose_without,
        )
        self.seen_down = False
        if never_recover:  # watch continuously: an outage nobody asked about still counts
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            self.up()
            time.sleep(0.2)

    def up(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(1.0)
            up = probe.connect_ex(("127.0.0.1", self.port)) == 0
        self.seen_down = self.seen_down or not up
        return up and not (self.never_recover and self.seen_down)


def build_app(
    color: str,
    tokens: set[str],
    latency_ms: float = 0.0,
    error_ratio: float = 0.0,
    dependency: Dependency | None = None,
) -> FastAPI:
    app = FastAPI(title="mini immune core", version="0.0.1")
    counters = {"accepted": 0, "stored": 0}
    rng = random.Random(7)

    def authorised(authorization: str = Header(default="")) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token not in tokens:
            raise HTTPException(status_code=401, detail="missing or invalid bearer token")

    @app.middleware("http")
    async def identity(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/api/v1/"):
            if latency_ms:
                await asyncio.sleep(latency_ms / 1000)
            if error_ratio and rng.random() < error_ratio:
                response: Response = Response(status_code=503, content=b'{"detail":"injected"}')
                response.headers["X-Immune-Color"] = color
                return response
        response = await call_next(request)
        response.headers["X-Immune-Color"] = color
        return response

    @app.get("/health/live")
    async def live(response: Response) -> dict[str, str]:
        if dependency is not None and dependency.dead_without and not dependency.up():
            response.status_code = 503
        return {"status": "ok", "color": color}

    @app.get("/health/ready")
    async def ready(response: Response) -> dict[str, bool]:
        ok = dependency is None or dependency.up()
        response.status_code = 200 if ok else 503
        return {"ready": ok}

    @app.post("/api/v1/events", status_code=202, dependencies=[Depends(authorised)])
    async def ingest(batch: Batch) -> Accepted:
        counters["accepted"] += len(batch.events)
        if dependency is None or not dependency.lose_without or dependency.up():
            counters["stored"] += len(batch.events)
        return Accepted(accepted=len(batch.events))

    @app.get("/api/v1/stats", dependencies=[Depends(authorised)])
    async def stats() -> Stats:
        # This one process is the whole service: its acknowledgements are the database-wide ones.
        return Stats(
            events_accepted=counters["accepted"],
            events_acknowledged=counters["accepted"],
            events_stored=counters["stored"],
            events_processed=counters["stored"],
        )

    @app.get("/api/v1/threats", dependencies=[Depends(authorised)])
    async def threats(limit: int = 20) -> list[dict[str, str]]:
        return []

    @app.get("/api/v1/coordination", dependencies=[Depends(authorised)])
    async def coordination() -> Coordination:
        return Coordination(leader=f"mini-{color}", term=1, is_leader=True)

    @app.websocket("/ws/stream")
    async def stream(websocket: WebSocket) -> None:
        # Like the real service: the token comes in the Authorization header, never in the URL.
        scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in tokens:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        while True:
            await websocket.send_json({"type": "heartbeat"})
            await asyncio.sleep(0.5)

    return app


def _dependency_from_env() -> Dependency | None:
    port = os.environ.get("IMMUNE_FAULT_DEPENDENCY_PORT", "")
    if not port:
        return None
    flags = set(os.environ.get("IMMUNE_FAULT_DEPENDENCY_MODE", "").split(","))
    return Dependency(int(port), "never-recover" in flags, "dead-without" in flags, "lose-without" in flags)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--color", default="blue")
    args = parser.parse_args()
    app = build_app(
        color=args.color,
        tokens=set(filter(None, os.environ.get("IMMUNE_API_TOKENS", "").split(","))),
        latency_ms=float(os.environ.get("IMMUNE_FAULT_LATENCY_MS", "0")),
        error_ratio=float(os.environ.get("IMMUNE_FAULT_ERROR_RATIO", "0")),
        dependency=_dependency_from_env(),
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
