import json
from typing import Any

import pytest
from immune_core.events.models import (
    EVENT_KINDS,
    TOPIC_BY_KIND,
    EndpointEvent,
    EventValidationError,
    IntelItem,
    NetworkFlow,
    event_to_json_dict,
    parse_event,
    partition_key,
)

from tests.app.events.support import endpoint_dict, flow_dict, intel_dict


def test_each_kind_parses_to_its_model_and_has_a_topic() -> None:
    assert isinstance(parse_event(flow_dict()), NetworkFlow)
    assert isinstance(parse_event(endpoint_dict()), EndpointEvent)
    assert isinstance(parse_event(intel_dict()), IntelItem)
    assert set(TOPIC_BY_KIND) == set(EVENT_KINDS)
    assert TOPIC_BY_KIND["network_flow"] == "vertice.network.events"
    assert TOPIC_BY_KIND["endpoint"] == "vertice.endpoint.events"
    assert TOPIC_BY_KIND["intel"] == "vertice.threats.intel"


def test_json_text_and_bytes_are_accepted_and_round_trip() -> None:
    text = json.dumps(flow_dict())
    from_text = parse_event(text)
    assert parse_event(text.encode()) == from_text
    dumped = event_to_json_dict(from_text)
    assert dumped["dst_ip"] == "2001:db8::1"  # canonical form
    assert dumped["timestamp"] == "2026-01-05T09:00:00.250000Z"
    assert parse_event(dumped) == from_text


def test_values_are_normalised() -> None:
    item = parse_event(intel_dict(indicator="Evil.Example.", indicator_type="domain"))
    assert isinstance(item, IntelItem) and item.indicator == "evil.example"
    digest = parse_event(intel_dict(indicator="AB" * 32, indicator_type="sha256"))
    assert isinstance(digest, IntelItem) and digest.indicator == "ab" * 32


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (flow_dict(dst_port=70000), "dst_port: Input should be less than or equal to 65535"),
        (flow_dict(dst_port="22"), "dst_port: Input should be a valid integer"),
        (flow_dict(src_ip="10.0.0.300"), "src_ip: '10.0.0.300' is not a valid IPv4 or IPv6 address"),
        (
            flow_dict(protocol="tcpx"),
            "protocol: Input should be 'tcp', 'udp', 'icmp', 'gre', 'esp', 'sctp' or 'other'",
        ),
        (flow_dict(bytes_out=-1), "bytes_out: Input should be greater than or equal to 0"),
        (flow_dict(colour="red"), "colour: unknown field (not in the schema)"),
        (flow_dict(timestamp=1767603600), "timestamp: must be an RFC 3339 date-time string"),
        (flow_dict(timestamp="2026-01-05T09:00:00"), "timestamp: Input should have timezone info"),
        (flow_dict(host_id="x" * 300), "host_id: String should have at most 253 characters"),
        (flow_dict(event_id="not-a-uuid"), "event_id: Input should be a valid UUID"),
        (flow_dict(schema_version=2), "schema_version: Input should be 1"),
        (flow_dict(kind="bogus"), "kind: must be one of network_flow, endpoint, intel"),
        ({k: v for k, v in flow_dict().items() if k != "kind"}, "kind: must be one of"),
        ({k: v for k, v in flow_dict().items() if k != "dst_ip"}, "dst_ip: Field required"),
        (endpoint_dict(signed="yes"), "signed: Input should be a valid boolean"),
        (endpoint_dict(sha256="abc"), "sha256: String should have at least 64 characters"),
        (endpoint_dict(action="teleport"), "action: Input should be"),
        (intel_dict(indicator="999.1.1.1"), "indicator: '999.1.1.1' is not a valid IPv4 or IPv6 address"),
        (
            intel_dict(indicator="-bad-.com", indicator_type="domain"),
            "indicator: '-bad-.com' is not a valid domain",
        ),
        (intel_dict(expires_at="2026-01-05T08:00:00Z"), "expires_at: must be later than timestamp"),
    ],
)
def test_invalid_events_get_a_precise_message(event: dict[str, Any], expected: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(event)
    assert caught.value.message.startswith("invalid event: ")
    assert expected in caught.value.message
    assert all({"field", "reason", "type"} <= set(error) for error in caught.value.errors)


def test_every_failing_field_is_reported_at_once() -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(flow_dict(dst_port=-5, bytes_in=-1, extra=1))
    assert [error["field"] for error in caught.value.errors] == ["dst_port", "bytes_in", "extra"]


def test_a_flood_of_bad_fields_gives_a_bounded_message() -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(flow_dict(**{f"junk_{i}": i for i in range(5000)}))
    assert caught.value.message.endswith("; and 4990 more errors")
    assert len(caught.value.errors) == 100


@pytest.mark.parametrize("bad", [[], "[1, 2]", "{not json", b"\xff\xfe", 42, None])
def test_non_objects_and_broken_json_never_raise_anything_else(bad: object) -> None:
    with pytest.raises(EventValidationError):
        parse_event(bad)


def test_partition_key_groups_one_antigen() -> None:
    assert partition_key(parse_event(flow_dict())) == "src:10.20.1.11"
    assert partition_key(parse_event(endpoint_dict())) == "host:srv-db-1"
    assert partition_key(parse_event(intel_dict())) == "intel:ip:185.220.101.4"


def test_events_are_immutable() -> None:
    event = parse_event(flow_dict())
    assert isinstance(event, NetworkFlow)
    with pytest.raises(Exception, match="frozen"):
        event.dst_port = 1


def test_the_event_key_is_the_id_as_text_and_no_field() -> None:
    # Cached once per event for the intake, storage and the consumer; never part of what is stored.
    event = parse_event(flow_dict())
    twin = parse_event(flow_dict(event_id=str(event.event_id)))
    assert event.event_key == str(event.event_id)
    assert "event_key" not in event_to_json_dict(event)
    assert "event_key" not in json.loads(event.model_dump_json())
    assert event == twin  # one with its key cached, one without
    other = parse_event(flow_dict(event_id="0d6f1a52-3c1e-4b7a-9f00-5d2c9e8b1a11"))
    assert other.event_key == "0d6f1a52-3c1e-4b7a-9f00-5d2c9e8b1a11" != event.event_key
