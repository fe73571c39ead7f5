"""Dead letters: a durable record for every message the service could not take, whatever its bytes.

A poison message must never stop its partition: the record of it has to be storable even when the
message itself is not. The raw bytes are kept as text only when they are valid UTF-8 without NUL (which
PostgreSQL's ``text`` refuses); anything else is kept as base64 (RFC 4648 section 4) with
``raw_encoding = 'base64'``, so every byte sequence gets its record and can be restored exactly.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from immune_core.storage.database import Connection
from immune_core.storage.repository import DLQ_TOPIC, OutboxMessage, dumps, enqueue

RAW_LIMIT = 8192  # bytes of a poison message kept (enough to debug, bounded)
DETAIL_LIMIT = 2000  # characters of the human-readable reason kept

# Stable reason codes (``reason_code`` column, DLQ topic field, metric label).
INVALID_EVENT = "invalid_event"
KIND_MISMATCH = "kind_mismatch"
DETECTION_ERROR = "detection_error"
STORAGE_ERROR = "storage_error"


def encode_raw(value: bytes) -> tuple[str, str]:
    """``(encoding, text)`` for ``value`` (first ``RAW_LIMIT`` bytes): ``utf-8`` text when it is text a
    database can store, else ``base64``. Never raises."""
    kept = value[:RAW_LIMIT]
    try:
        text = kept.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return "utf-8", text
    return "base64", base64.b64encode(kept).decode("ascii")


def decode_raw(encoding: str, text: str) -> bytes:
    """The stored bytes back from ``(raw_encoding, raw)``; raises ValueError for an unknown encoding."""
    if encoding == "utf-8":
        return text.encode("utf-8")
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    raise ValueError(f"unknown raw encoding {encoding!r}")


def storable_text(text: str, limit: int = DETAIL_LIMIT) -> str:
    """``text`` with what a database refuses escaped: NUL as ``\\x00``, lone surrogates as ``\\udXXX``."""
    cleaned = text[:limit].replace("\x00", "\\x00")
    return cleaned.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class DeadLetter:
    """One message refused: where it came from, why (code + detail) and its bytes."""

    topic: str
    partition: int | None
    offset: int | None
    reason_code: str
    detail: str
    raw: bytes
    error_type: str | None = None  # exception class for detection_error / storage_error


async def insert_dead_letter(conn: Connection, letter: DeadLetter) -> None:
    """Store ``letter`` and queue its ``immunis.dlq`` message in the caller's transaction."""
    now = time.time()
    encoding, raw = encode_raw(letter.raw)
    detail = storable_text(letter.detail)
    topic = storable_text(letter.topic, 300)
    await conn.execute(
        "INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, reason, raw, received_at,"
        " raw_encoding, reason_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        topic,
        letter.partition,
        letter.offset,
        detail,
        raw,
        now,
        encoding,
        letter.reason_code,
    )
    payload = {
        "topic": topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "reason": detail,
        "reason_code": letter.reason_code,
        "error_type": letter.error_type,
        "raw": raw,
        "raw_encoding": encoding,
        "received_at": now,
    }
    await enqueue(conn, [OutboxMessage(DLQ_TOPIC, f"{topic}:{letter.partition}", dumps(payload))])
