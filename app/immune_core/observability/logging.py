"""Structured JSON logs (structlog) that never carry secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values are secrets whatever their content; anything URL-shaped also loses its password.
_SECRET_KEYS = re.compile(r"(token|password|secret|authorization|api_key|credential)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
# A secret-named query parameter in a logged URL or request line (uvicorn logs WebSocket handshakes as
# '"WebSocket /ws/stream?token=..." [accepted]'): its value goes, whatever the encoding.
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[A-Za-z0-9_.-]*(?:token|password|secret|api_key|apikey|credential|auth)[A-Za-z0-9_.-]*))"
    r"=(?P<value>[^&;#\s\"']*)",
    re.IGNORECASE,
)

# Credentials in logged headers: the websockets library logs every handshake header at DEBUG
# ("< authorization: Bearer ..."), and the WebSocket subprotocol carries a browser's token.
_AUTH_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization\s*[:=]\s*)(?P<value>[^\r\n\"',]+)", re.IGNORECASE
)
_BEARER_SUBPROTOCOL = re.compile(r"(?P<prefix>base64url\.bearer\.)[A-Za-z0-9_-]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Hide URL passwords, secret-named query values, Authorization header values and subprotocol tokens."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['key']}=***", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m['name']}***", text)
    return _BEARER_SUBPROTOCOL.sub(lambda m: f"{m['prefix']}***", text)


class RedactingFilter(logging.Filter):
    """Redacts every stdlib record (uvicorn, aiokafka, ...) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route stdlib and structlog output through one JSON renderer on stdout."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries (uvicorn, aiokafka) log through stdlib; render them the same way.
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka is very chatty about every reconnect attempt while a broker is down.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
