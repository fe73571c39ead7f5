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
    events_stored: int


class Coordination(BaseModel):
    leader: str
    term: int
    is_leader: bool


def build_app(color: str, tokens: set[str], latency_ms: float = 0.0, error_ratio: float = 0.0) -> FastAPI:
    app = FastAPI(title="mini immune core", version="0.0.1")
    counters = {"accepted": 0}
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
    async def live() -> dict[str, str]:
        return {"status": "ok", "color": color}

    @app.get("/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/api/v1/events", status_code=202, dependencies=[Depends(authorised)])
    async def ingest(batch: Batch) -> Accepted:
        counters["accepted"] += len(batch.events)
        return Accepted(accepted=len(batch.events))

    @app.get("/api/v1/stats", dependencies=[Depends(authorised)])
    async def stats() -> Stats:
        return Stats(events_accepted=counters["accepted"], events_stored=counters["accepted"])

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
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
