"""What the hostile-input checks cost on the ingest path, per batch of valid events.

    .venv/bin/python bench/input_parse.py [--events 500] [--repeat 200]

Prints median milliseconds per batch for: ``json.loads`` (the parser used before), ``read_json``
(pydantic-core's bounded parser plus the nesting-depth check), the depth check alone, and
``parse_event`` over every event (schema, time range, clock bound, storable text). When orjson or
msgspec is importable (neither is a dependency: ``uv pip install orjson msgspec`` into a scratch venv),
their parsers are printed beside, the figures behind keeping pydantic-core (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from immune_core.events.models import parse_event
from immune_core.events.text import json_depth_exceeds, read_json


def _batch(size: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "timestamp": now,
            "kind": "network_flow",
            "host_id": "web-01",
            "src_ip": "203.0.113.7",
            "dst_ip": "10.0.0.5",
            "dst_port": 443,
            "protocol": "tcp",
            "bytes_in": 1200,
            "bytes_out": 800,
        }
        for _ in range(size)
    ]
    return json.dumps({"events": events}).encode()


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm-up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _alternatives(raw: bytes) -> list[tuple[str, Callable[[], Any]]]:
    """Other JSON parsers, for comparison only, when installed."""
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("pydantic_core.from_json", lambda: pydantic_core.from_json(raw))
    ]
    try:
        import orjson

        rows.append(("orjson.loads", lambda: orjson.loads(raw)))
    except ImportError:
        print("orjson not installed: no comparison row")
    try:
        import msgspec

        decoder = msgspec.json.Decoder()
        rows.append(("msgspec.json.decode (untyped)", lambda: decoder.decode(raw)))
    except ImportError:
        print("msgspec not installed: no comparison row")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500, help="events per batch")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per measurement")
    args = parser.parse_args()
    raw = _batch(args.events)
    parsed = pydantic_core.from_json(raw)
    rows = [
        ("json.loads", lambda: json.loads(raw)),
        ("read_json (bounded parse + depth check)", lambda: read_json(raw)),
        ("depth check alone", lambda: json_depth_exceeds(parsed)),
        ("parse_event x events", lambda: [parse_event(event) for event in parsed["events"]]),
    ]
    rows += _alternatives(raw)
    print(f"batch of {args.events} events, {len(raw)} bytes, median of {args.repeat} runs")
    for name, call in rows:
        print(f"  {name:<42} {_median_ms(call, args.repeat):8.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
