"""Text the stores can keep, and JSON bodies the parsers can read, checked at the boundary.

PostgreSQL refuses the NUL character in ``text`` and ``jsonb`` (``invalid byte sequence for encoding
"UTF8": 0x00``, ``unsupported Unicode escape sequence``), and a lone UTF-16 surrogate (``"\\ud800"`` in
JSON) has no UTF-8 encoding at all, so the driver fails before the query is sent. Both are legal in a
Python ``str`` decoded from JSON, so without a check they reach the database and answer 500 (or crash a
consumer). Every text field of every input is refused with a 4xx naming the field instead.

JSON nesting is bounded for the same reason: CPython's ``json`` recurses per level, so ``[`` x 1000
raises ``RecursionError``; no input of this service nests deeper than a handful of levels.
"""

from __future__ import annotations

import re
from typing import Any

import pydantic_core

# ECMA-262 and Rust regex both read this; it goes into the OpenAPI/JSON Schema as the field's pattern.
STORABLE_TEXT_PATTERN = r"^[^\x00]*$"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_JSON_DEPTH = 16


class UnreadableJson(ValueError):
    """A body that is not JSON this service reads; ``reason`` completes "body ..." / "message ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unstorable_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"contains a NUL character (U+0000) at offset {found.start()}, which cannot be stored"
    return (
        f"contains a lone UTF-16 surrogate (U+{ord(found.group()):04X}) at offset {found.start()}, "
        "which has no UTF-8 encoding"
    )


def check_storable(value: str) -> str:
    """Pydantic ``AfterValidator``: refuse text the database cannot store."""
    reason = unstorable_reason(value)
    if reason is not None:
        raise ValueError(reason)
    return value


def json_depth_exceeds(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when containers nest deeper than ``limit`` (level by level: no recursion on hostile input)."""
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        children: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node
            children.extend([child for child in values if type(child) is dict or type(child) is list])
        level = children
    return False


def read_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON document, refusing malformed or too deeply nested input with ``UnreadableJson``.

    Parsed by pydantic-core's JSON parser (Rust, bounded recursion: it fails cleanly where ``json.loads``
    raises ``RecursionError``), then the depth is checked against ``max_depth``. NaN and Infinity are
    not JSON (RFC 8259 section 6) and are refused.
    """
    try:
        value = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        message = str(exc)
        if "recursion" in message.lower():
            raise UnreadableJson(f"nests deeper than {max_depth} levels") from None
        raise UnreadableJson(f"is not valid JSON: {message}") from None
    if json_depth_exceeds(value, max_depth):
        raise UnreadableJson(f"nests deeper than {max_depth} levels")
    return value
