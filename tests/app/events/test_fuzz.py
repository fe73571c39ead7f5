"""Whatever arrives, validation answers with EventValidationError or a valid event, never anything else;
and whatever valid event arrives, the engine processes it without raising."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from immune_core.detection.engine import DetectionEngine
from immune_core.events.models import EventValidationError, parse_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "event_id",
    "timestamp",
    "kind",
    "host_id",
    "src_ip",
    "dst_ip",
    "dst_port",
    "protocol",
    "bytes_in",
    "bytes_out",
    "process",
    "parent_process",
    "user",
    "action",
    "signed",
    "indicator",
    "indicator_type",
    "severity",
    "source",
    "expires_at",
    "conn_state",
    "domain",
    "sha256",
    "remote_ip",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=12) | json_values)
def test_arbitrary_input_only_ever_raises_event_validation_error(data: Any) -> None:
    for form in (data, json.dumps(data)):
        try:
            parse_event(form)
        except EventValidationError as exc:
            assert exc.message.startswith("invalid event: ")


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    base = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10_000)))
    common = {"event_id": str(draw(st.uuids())), "timestamp": base.isoformat()}
    ip = st.sampled_from(["10.0.0.1", "10.0.0.2", "203.0.113.9", "::1", "2001:db8::7", "45.133.1.1"])
    host = st.sampled_from(["h1", "h2", "srv-db-1"])
    kind = draw(st.sampled_from(["network_flow", "endpoint", "intel"]))
    if kind == "network_flow":
        return {
            **common,
            "kind": kind,
            "host_id": draw(host),
            "src_ip": draw(ip),
            "dst_ip": draw(ip),
            "dst_port": draw(st.integers(0, 65535)),
            "protocol": draw(st.sampled_from(["tcp", "udp", "icmp"])),
            "bytes_in": draw(st.integers(0, 2**40)),
            "bytes_out": draw(st.integers(0, 2**40)),
            "conn_state": draw(st.sampled_from(["established", "rejected", "reset"])),
        }
    if kind == "endpoint":
        return {
            **common,
            "kind": kind,
            "host_id": draw(host),
            "process": draw(st.sampled_from(["a", "b", "c"])),
            "parent_process": "p",
            "user": "u",
            "signed": draw(st.booleans()),
            "action": draw(st.sampled_from(["process_start", "login_failed"])),
            "remote_ip": draw(ip),
        }
    return {
        **common,
        "kind": kind,
        "indicator": draw(ip),
        "indicator_type": "ip",
        "severity": "high",
        "source": "f",
        "expires_at": (base + timedelta(seconds=draw(st.integers(1, 5000)))).isoformat(),
    }


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_events(), min_size=1, max_size=60))
def test_engine_accepts_any_valid_event_stream(events: list[dict[str, Any]]) -> None:
    engine = DetectionEngine()
    for event in events:
        for threat in engine.process(parse_event(event)):
            assert threat.evidence and threat.cells
    assert engine.counters["cell_errors"] == 0
