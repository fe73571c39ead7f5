"""WebSocket ``/ws/stream``: live threats and alerts.

Authentication, never in the URL (URLs end up in access logs, proxies and browser history):

* ``Authorization: Bearer <token>`` (non-browser clients), or
* the ``Sec-WebSocket-Protocol`` header, for browsers (which cannot set headers on a WebSocket): offer
  the two subprotocols ``bearer`` and ``base64url.bearer.<token, base64url without padding>``, e.g.
  ``new WebSocket(url, ["bearer", "base64url.bearer." + b64url(token)])``; the server answers with
  ``bearer`` (never with the token). The scheme is Kubernetes' (``base64url.bearer.authorization.k8s.io``).

A ``?token=`` query is refused (close 1008 with the reason), and the access log redacts it anyway
(``observability/logging.py``). A token that is missing or not accepted fails the handshake (HTTP 403).

Filters as query parameters (``types=threat,alert``, ``min_severity=high``,
``category=port_scan,brute_force``, ``antigen=10.0.0.5``) or later as a JSON message
``{"subscribe": {...same keys...}}``; ``{"type": "ping"}`` answers ``{"type": "pong"}``.
The ``subscribed`` acknowledgement says ``live: true`` once this replica reads the output topics
(right after start-up it may still be attaching; threats published before that are not pushed).

Misuse ends the connection with a close frame and a reason (RFC 6455 section 7.4.1): a binary frame
1003 (unsupported data), text that is not JSON or nests too deeply 1007 (invalid payload), a message or
filter of the wrong shape 1008 (policy violation), in the query string or in a message (the handshake
is accepted so that the close frame can say why). A client whose queue fills up is closed with 1013.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, WebSocket

from immune_core.api.deps import HubDep
from immune_core.api.errors import ApiError
from immune_core.api.security import authenticate_websocket
from immune_core.detection.threat import SEVERITY_RANK
from immune_core.events.text import UnreadableJson, read_json, unstorable_reason
from immune_core.stream.hub import STREAM_TYPES, StreamFilter, StreamHub, Subscriber

router = APIRouter(tags=["stream"])
UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
BEARER_PROTOCOL = "bearer"
BEARER_SUBPROTOCOL_PREFIX = "base64url.bearer."
_FILTER_KEYS = frozenset({"types", "min_severity", "category", "antigen"})
_MAX_MESSAGE_DEPTH = 4  # {"subscribe": {"types": [...]}} is three levels
_MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


class StreamRequestError(ValueError):
    """A request on the stream that ends the connection; ``code`` is the close code to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def websocket_credentials(websocket: WebSocket) -> tuple[str | None, str | None]:
    """``(token, subprotocol to answer)`` from the Authorization or Sec-WebSocket-Protocol header.

    Raises ``StreamRequestError`` (1008) when the token is in the query string or the protocol
    header carries a token that is not base64url.
    """
    if "token" in websocket.query_params:
        raise StreamRequestError(
            POLICY_VIOLATION,
            "a token in the URL is refused (URLs are logged): send Authorization or Sec-WebSocket-Protocol",
        )
    offered: list[str] = list(websocket.scope.get("subprotocols") or ())
    answer = BEARER_PROTOCOL if BEARER_PROTOCOL in offered else None
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), answer
    for protocol in offered:
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            encoded = protocol.removeprefix(BEARER_SUBPROTOCOL_PREFIX)
            try:
                token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise StreamRequestError(
                    POLICY_VIOLATION, "Sec-WebSocket-Protocol token is not base64url"
                ) from None
            return token or None, answer
    return None, answer


def _text(name: str, value: Any, max_length: int = 255) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise ValueError(f"{name}: longer than {max_length} characters")
    reason = unstorable_reason(value)
    if reason is not None:
        raise ValueError(f"{name}: {reason}")
    return value


def _split(name: str, value: Any) -> list[str]:
    if isinstance(value, list):
        if len(value) > 32:
            raise ValueError(f"{name}: more than 32 values")
        return [_text(name, v) for v in value]
    return [part.strip() for part in _text(name, value, 1024).split(",") if part.strip()]


def parse_filter(params: Mapping[str, Any]) -> StreamFilter:
    """A ``StreamFilter`` from query parameters or a ``subscribe`` message; ``ValueError`` names the key."""
    unknown_keys = set(params) - _FILTER_KEYS
    if unknown_keys:
        raise ValueError(f"unknown filter keys {sorted(unknown_keys)}; use {', '.join(sorted(_FILTER_KEYS))}")
    types = frozenset(_split("types", params["types"])) if params.get("types") else frozenset(STREAM_TYPES)
    unknown = types - set(STREAM_TYPES)
    if unknown:
        raise ValueError(f"types: unknown {sorted(unknown)}; use {', '.join(STREAM_TYPES)}")
    min_severity = _text("min_severity", params["min_severity"]) if params.get("min_severity") else None
    if min_severity is not None and min_severity not in SEVERITY_RANK:
        raise ValueError(f"min_severity: must be one of {', '.join(SEVERITY_RANK)}")
    categories = frozenset(_split("category", params["category"])) if params.get("category") else frozenset()
    antigen = _text("antigen", params["antigen"]) if params.get("antigen") else None
    return StreamFilter(types, min_severity, categories, antigen)


def _reason(text: str) -> str:
    encoded = text.encode()
    if len(encoded) <= _MAX_REASON_BYTES:
        return text
    return encoded[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


@router.websocket("/ws/stream")
async def stream(websocket: WebSocket, hub: HubDep) -> None:
    try:
        token, subprotocol = websocket_credentials(websocket)
    except StreamRequestError as exc:
        await _close_with_reason(websocket, exc.code, exc.reason)
        return
    try:
        authenticate_websocket(websocket, token, "read")
    except ApiError as exc:
        # A failed authentication fails the handshake (HTTP 403), as RFC 6455 section 4.2.2 suggests.
        await websocket.close(code=POLICY_VIOLATION, reason=exc.code)
        return
    try:
        stream_filter = parse_filter(dict(websocket.query_params))
    except ValueError as exc:
        await _close_with_reason(websocket, POLICY_VIOLATION, str(exc), subprotocol)
        return
    await websocket.accept(subprotocol=subprotocol)
    subscriber = hub.subscribe(stream_filter)
    await websocket.send_json({"type": "subscribed", "filter": _describe(stream_filter), "live": hub.live})
    sender = asyncio.create_task(_send_loop(websocket, subscriber))
    receiver = asyncio.create_task(_receive_loop(websocket, hub, subscriber))
    dropped = asyncio.create_task(subscriber.dropped.wait())
    try:
        done, _ = await asyncio.wait({sender, receiver, dropped}, return_when=asyncio.FIRST_COMPLETED)
        if dropped in done:
            with contextlib.suppress(Exception):
                await websocket.close(code=TRY_AGAIN_LATER, reason="too slow: queue overflow")
        elif receiver in done and not receiver.cancelled():
            misuse = receiver.exception()
            if isinstance(misuse, StreamRequestError):
                with contextlib.suppress(Exception):
                    await websocket.close(code=misuse.code, reason=_reason(misuse.reason))
    finally:
        for task in (sender, receiver, dropped):
            task.cancel()
        for task in (sender, receiver, dropped):
            # Retrieve every outcome (a send on a closed socket fails): no "exception never retrieved".
            with contextlib.suppress(BaseException):
                await task
        hub.unsubscribe(subscriber)


async def _close_with_reason(
    websocket: WebSocket, code: int, reason: str, subprotocol: str | None = None
) -> None:
    """Accept only to say why in a close frame (a refused handshake carries no reason), then close."""
    await websocket.accept(subprotocol=subprotocol)
    await websocket.close(code=code, reason=_reason(reason))


async def _send_loop(websocket: WebSocket, subscriber: Subscriber) -> None:
    while True:
        message = await subscriber.queue.get()
        await websocket.send_json(message)


def _read_request(message: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of one received frame; ``StreamRequestError`` says which close code and why."""
    text = message.get("text")
    if text is None:
        raise StreamRequestError(UNSUPPORTED_DATA, "binary frames are not accepted: send JSON text")
    try:
        request = read_json(text, max_depth=_MAX_MESSAGE_DEPTH)
    except UnreadableJson as exc:
        raise StreamRequestError(INVALID_PAYLOAD, f"message {exc.reason}") from None
    if not isinstance(request, dict):
        raise StreamRequestError(POLICY_VIOLATION, 'expected a JSON object: {"subscribe": {...}}')
    return request


async def _receive_loop(websocket: WebSocket, hub: StreamHub, subscriber: Subscriber) -> None:
    """Serve subscribe/ping requests until the client leaves; misuse raises ``StreamRequestError``."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        request = _read_request(message)
        if request == {"type": "ping"}:
            await websocket.send_json({"type": "pong"})
            continue
        if set(request) != {"subscribe"} or not isinstance(request["subscribe"], dict):
            raise StreamRequestError(
                POLICY_VIOLATION, 'expected {"subscribe": {...filter...}} or {"type": "ping"}'
            )
        try:
            subscriber.filter = parse_filter(request["subscribe"])
        except ValueError as exc:
            raise StreamRequestError(POLICY_VIOLATION, str(exc)) from None
        await websocket.send_json(
            {"type": "subscribed", "filter": _describe(subscriber.filter), "live": hub.live}
        )


def _describe(stream_filter: StreamFilter) -> dict[str, Any]:
    return {
        "types": sorted(stream_filter.types),
        "min_severity": stream_filter.min_severity,
        "category": sorted(stream_filter.categories),
        "antigen": stream_filter.antigen,
    }
