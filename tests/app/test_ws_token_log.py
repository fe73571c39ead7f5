"""No bearer token in the log of a real served process, whatever a WebSocket client puts in its URL.

uvicorn logs every WebSocket handshake with its full path and query ('"WebSocket /ws/stream?token=..."
[accepted]' or '403'), and at DEBUG the websockets library logs every handshake header
("< authorization: Bearer ..."); this test reads what `immune-core serve` actually wrote at DEBUG.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from immune_core.observability.logging import RedactingFilter, redact_text
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.app.service_process import ServiceProcess


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServiceProcess]:
    token = f"secret-{uuid.uuid4().hex}"
    env = {"IMMUNE_DATA_DIR": str(tmp_path / "data"), "IMMUNE_LOG_LEVEL": "DEBUG"}
    process = ServiceProcess("ws-log", env, tmp_path, token).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_a_token_in_the_websocket_url_is_refused_and_never_logged(served: ServiceProcess) -> None:
    base = served.base_url.replace("http", "ws") + "/ws/stream"
    token = served.token
    for url in (f"{base}?token={token}", f"{base}?types=threat&access_token={token}&token={token}"):
        with connect(url, open_timeout=10) as refused:  # accepted only to say why it is refused
            with pytest.raises(ConnectionClosed) as closed:
                refused.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "token in the URL" in closed.value.rcvd.reason
    with pytest.raises(InvalidStatus):  # a wrong token fails the handshake
        with connect(base, additional_headers={"Authorization": "Bearer wrong"}, open_timeout=10):
            pass
    # The supported ways in are accepted (and their handshake is logged too).
    with connect(base, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
        assert '"subscribed"' in str(ws.recv(timeout=10))
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    with connect(base, subprotocols=["bearer", f"base64url.bearer.{encoded}"], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"
        assert '"subscribed"' in str(ws.recv(timeout=10))
    served.stop()

    log = served.log_path.read_text(errors="replace")
    assert "WebSocket /ws/stream?token=***" in log, log[-3000:]  # the handshake line is there, redacted
    assert "access_token=***" in log
    assert token not in log and encoded not in log
    assert "authorization: ***" in log.lower()  # the DEBUG header lines are there, redacted


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('127.0.0.1:5 - "WebSocket /ws/stream?token=s3cr3t" [accepted]', "s3cr3t"),
        ('"GET /x?types=a&api_key=s3cr3t&b=1 HTTP/1.1" 200', "s3cr3t"),
        ("< authorization: Bearer s3cr3t", "s3cr3t"),
        ("< Proxy-Authorization: Basic czNjcjN0", "czNjcjN0"),
        ("< sec-websocket-protocol: bearer, base64url.bearer.czNjcjN0", "czNjcjN0"),
        ("postgresql://immune:s3cr3t@db:5432/immune", "s3cr3t"),
    ],
)
def test_redaction_covers_urls_queries_and_headers(line: str, secret: str) -> None:
    assert secret not in redact_text(line) and "***" in redact_text(line)
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "%s", (line,), None)
    assert RedactingFilter().filter(record) and secret not in record.getMessage()


def test_redaction_leaves_ordinary_lines_alone() -> None:
    line = '127.0.0.1:5 - "WebSocket /ws/stream?types=threat" [accepted]'
    assert redact_text(line) == line
