"""Progress output while the pipeline runs: readable lines for people, JSON lines for machines.

Gates and stages receive a `Progress` and call it with a short message plus structured fields;
`progress("canary step 10%: 412 requests", step="canary-10", requests=412)`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def __call__(self, message: str, /, **fields: Any) -> None: ...


class ConsoleProgress:
    """Human lines on stderr (stdout stays free for `--json` results)."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "") -> None:
        self._stream = stream or sys.stderr
        self._prefix = prefix

    def __call__(self, message: str, /, **fields: Any) -> None:
        now = datetime.now(UTC).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in {"stage", "event"})
        stage = fields.get("stage")
        head = f"[{now}] {self._prefix}{stage + ': ' if stage else ''}{message}"
        self._stream.write(f"{head}{'  (' + extra + ')' if extra else ''}\n")
        self._stream.flush()

    def child(self, prefix: str) -> ConsoleProgress:
        return ConsoleProgress(self._stream, self._prefix + prefix)


class JsonLinesProgress:
    """One JSON object per line on stderr, each with a UTC timestamp."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr

    def __call__(self, message: str, /, **fields: Any) -> None:
        event = {"at": datetime.now(UTC).isoformat(), "message": message, **fields}
        self._stream.write(json.dumps(event, default=str) + "\n")
        self._stream.flush()


class RecordingProgress:
    """Forwards to another progress and keeps every event (used for the timeline and in tests)."""

    def __init__(self, forward: Callable[..., None] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._forward = forward

    def __call__(self, message: str, /, **fields: Any) -> None:
        self.events.append({"at": datetime.now(UTC).isoformat(), "message": message, **fields})
        if self._forward is not None:
            self._forward(message, **fields)


def silent(message: str, /, **fields: Any) -> None:
    """A progress that says nothing."""
