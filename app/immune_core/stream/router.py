"""WebSocket ``/ws/stream``: live threats and alerts.

Authentication: ``Authorization: Bearer <token>`` or ``?token=`` (browsers cannot set headers on a
WebSocket). Filters as query parameters (``types=threat,alert``, ``min_severity=high``,
``category=port_scan,brute_force``, ``antigen=10.0.0.5``) or later as a JSON message
``{"subscribe": {...same keys...}}``. A client whose queue fills up is closed with code 1013.
The ``subscribed`` acknowledgement says ``live: true`` once this replica reads the output topics
(right after start-up it may still be attaching; threats published before that are not pushed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from immune_core.api.errors import ApiError
from immune_core.api.security import authenticate, websocket_token
from immune_core.detection.threat import SEVERITY_RANK
from immune_core.runtime import Runtime
from immune_core.stream.hub import STREAM_TYPES, StreamFilter, StreamHub, Subscriber

router = APIRouter(tags=["stream"])
_POLICY_VIOLATION = 1008
_TRY_AGAIN_LATER = 1013


def _split(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def parse_filter(params: Mapping[str, Any]) -> StreamFilter:
    types = frozenset(_split(params["types"])) if params.get("types") else frozenset(STREAM_TYPES)
    unknown = types - set(STREAM_TYPES)
    if unknown:
        raise ValueError(f"types: unknown {sorted(unknown)}; use {', '.join(STREAM_TYPES)}")
    min_severity = params.get("min_severity") or None
    if min_severity is not None and min_severity not in SEVERITY_RANK:
        raise ValueError(f"min_severity: must be one of {', '.join(SEVERITY_RANK)}")
    categories = frozenset(_split(params["category"])) if params.get("category") else frozenset()
    return StreamFilter(types, min_severity, categories, params.get("antigen") or None)


@router.websocket("/ws/stream")
async def stream(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    try:
        authenticate(websocket_token(websocket), runtime.settings.token_values())
        stream_filter = parse_filter(dict(websocket.query_params))
    except ApiError as exc:
        await websocket.close(code=_POLICY_VIOLATION, reason=exc.code)
        return
    except ValueError as exc:
        await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])
        return
    await websocket.accept()
    hub: StreamHub = runtime.hub
    subscriber = hub.subscribe(stream_filter)
    await websocket.send_json({"type": "subscribed", "filter": _describe(stream_filter), "live": hub.live})
    sender = asyncio.create_task(_send_loop(websocket, subscriber))
    receiver = asyncio.create_task(_receive_loop(websocket, hub, subscriber))
    dropped = asyncio.create_task(subscriber.dropped.wait())
    try:
        done, _ = await asyncio.wait({sender, receiver, dropped}, return_when=asyncio.FIRST_COMPLETED)
        if dropped in done:
            with contextlib.suppress(Exception):
                await websocket.close(code=_TRY_AGAIN_LATER, reason="too slow: queue overflow")
    finally:
        for task in (sender, receiver, dropped):
            task.cancel()
        hub.unsubscribe(subscriber)


async def _send_loop(websocket: WebSocket, subscriber: Subscriber) -> None:
    while True:
        message = await subscriber.queue.get()
        await websocket.send_json(message)


async def _receive_loop(websocket: WebSocket, hub: StreamHub, subscriber: Subscriber) -> None:
    try:
        while True:
            text = await websocket.receive_text()
            try:
                request = json.loads(text)
                if isinstance(request, dict) and isinstance(request.get("subscribe"), dict):
                    subscriber.filter = parse_filter(request["subscribe"])
                    await websocket.send_json(
                        {"type": "subscribed", "filter": _describe(subscriber.filter), "live": hub.live}
                    )
                elif request == {"type": "ping"}:
                    await websocket.send_json({"type": "pong"})
                else:
                    await websocket.send_json({"type": "error", "message": "send {'subscribe': {...}}"})
            except ValueError as exc:
                await websocket.send_json({"type": "error", "message": str(exc)})
    except WebSocketDisconnect:
        return


def _describe(stream_filter: StreamFilter) -> dict[str, Any]:
    return {
        "types": sorted(stream_filter.types),
        "min_severity": stream_filter.min_severity,
        "category": sorted(stream_filter.categories),
        "antigen": stream_filter.antigen,
    }
