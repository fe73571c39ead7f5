"""The boundary every event crosses (HTTP and Kafka both call parse_event): time range, clock skew,
storable text, addresses without zone ids, no double decoding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from immune_core.events.models import (
    DEFAULT_MAX_CLOCK_SKEW_S,
    EventValidationError,
    NetworkFlow,
    configure_event_time,
    max_clock_skew,
    parse_event,
)
from immune_core.events.text import UnreadableJson, read_json, unstorable_reason

from tests.app.events.support import endpoint_dict, flow_dict, intel_dict

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _stamp(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _reason(event: object, now: datetime = NOW) -> str:
    with pytest.raises(EventValidationError) as caught:
        parse_event(event, now=now)
    return caught.value.message


@pytest.fixture
def skew_of_60_s() -> Iterator[None]:
    configure_event_time(60)
    try:
        yield
    finally:
        configure_event_time(DEFAULT_MAX_CLOCK_SKEW_S)


def test_the_two_events_of_the_report_are_refused_with_their_reason() -> None:
    intel = intel_dict(indicator="192.0.2.66", expires_at="9999-12-31T23:59:59.999999Z")
    assert "expires_at" in _reason(intel) and "1970 to 2199" in _reason(intel)
    flow = flow_dict(src_ip="192.0.2.66", timestamp="9999-12-31T23:59:59Z")
    assert "timestamp" in _reason(flow)


def test_a_timestamp_beyond_the_clock_skew_is_refused_and_within_it_accepted() -> None:
    skew = timedelta(seconds=DEFAULT_MAX_CLOCK_SKEW_S)
    assert parse_event(flow_dict(timestamp=_stamp(NOW + skew)), now=NOW).timestamp == NOW + skew
    assert parse_event(flow_dict(timestamp=_stamp(NOW - timedelta(days=300))), now=NOW)
    message = _reason(flow_dict(timestamp=_stamp(NOW + skew + timedelta(seconds=1))))
    assert "timestamp" in message and "301 s ahead" in message and "IMMUNE_MAX_CLOCK_SKEW_S" in message
    assert "ahead" in _reason(flow_dict(timestamp="2100-01-01T00:00:00Z"))


def test_the_skew_is_configurable(skew_of_60_s: None) -> None:
    assert max_clock_skew() == timedelta(seconds=60)
    assert "60 s in the future" in _reason(flow_dict(timestamp=_stamp(NOW + timedelta(seconds=61))))
    assert parse_event(flow_dict(timestamp=_stamp(NOW + timedelta(seconds=60))), now=NOW)
    with pytest.raises(ValueError):
        configure_event_time(-1)


def test_the_wall_clock_is_the_default_reference() -> None:
    now = datetime.now(UTC)
    assert parse_event(flow_dict(timestamp=_stamp(now)))
    with pytest.raises(EventValidationError):
        parse_event(flow_dict(timestamp=_stamp(now + timedelta(hours=1))))


@pytest.mark.parametrize(
    ("timestamp", "why"),
    [
        ("1969-12-31T23:59:59Z", "1970 to 2199"),
        ("0001-01-01T00:00:00Z", "1970 to 2199"),
        ("1700000000", "1970 to 2199"),  # lax parsing would take a Unix time in text
        ("2200-01-01T00:00:00Z", "1970 to 2199"),
    ],
)
def test_instants_outside_the_arithmetic_safe_range_are_refused(timestamp: str, why: str) -> None:
    assert why in _reason(flow_dict(timestamp=timestamp), now=datetime(2199, 12, 31, tzinfo=UTC))


def test_expiry_is_bounded_too_but_far_future_expiry_within_range_is_fine() -> None:
    assert parse_event(intel_dict(expires_at="2199-12-31T23:59:59Z"), now=NOW)
    assert "expires_at" in _reason(intel_dict(expires_at="2200-01-01T00:00:00Z"))


def test_the_kafka_form_bytes_gets_the_same_bound() -> None:
    raw = json.dumps(flow_dict(timestamp="2100-01-01T00:00:00Z")).encode()
    assert "ahead of this service's clock" in _reason(raw)


def test_json_text_holding_an_event_is_not_decoded_twice() -> None:
    double = json.dumps(json.dumps(flow_dict())).encode()
    with pytest.raises(EventValidationError):
        parse_event(double, now=NOW)
    assert isinstance(parse_event(json.dumps(flow_dict()).encode(), now=NOW), NetworkFlow)


@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%25eth0", "fe80::1%1"])
def test_ipv6_zone_ids_are_refused(address: str) -> None:
    assert "zone id" in _reason(flow_dict(src_ip=address))
    assert "zone id" in _reason(intel_dict(indicator=address))
    assert parse_event(flow_dict(src_ip="fe80::1"), now=NOW)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (endpoint_dict(process="ba\x00sh"), "process"),
        (endpoint_dict(user="\ud800"), "user"),
        (endpoint_dict(command_line="curl x\x00"), "command_line"),
        (intel_dict(description="bad\x00"), "description"),
        (intel_dict(source="feed\udfff"), "source"),
        (intel_dict(indicator="evil\x00.example", indicator_type="domain"), "indicator"),
    ],
)
def test_text_the_database_cannot_store_is_refused_naming_the_field(
    event: dict[str, Any], field: str
) -> None:
    message = _reason(event)
    assert message.startswith(f"invalid event: {field}:"), message
    assert "\x00" not in message and not any(0xD800 <= ord(c) <= 0xDFFF for c in message)


def test_unstorable_reason_names_the_code_point() -> None:
    assert unstorable_reason("fine ünïcode ✓") is None
    assert "U+0000" in (unstorable_reason("a\x00b") or "")
    assert "U+D83D" in (unstorable_reason("\ud83d") or "")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 1000, "nests deeper"),
        (b"[" * 100 + b"]" * 100, "nests deeper"),
        (b'{"a":' * 20 + b"1" + b"}" * 20, "nests deeper"),
        (b"{", "not valid JSON"),
        (b"NaN", "not valid JSON"),
    ],
)
def test_read_json_refuses_deep_and_malformed_documents(raw: bytes, why: str) -> None:
    with pytest.raises(UnreadableJson) as caught:
        read_json(raw)
    assert why in caught.value.reason


def test_read_json_reads_flat_documents() -> None:
    assert read_json(json.dumps({"events": [flow_dict()]})) == {"events": [flow_dict()]}
