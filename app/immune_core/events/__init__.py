"""Input events: models, validation, topics and the versioned JSON Schemas."""

from immune_core.events.models import (
    EVENT_KINDS,
    KIND_BY_TOPIC,
    TOPIC_BY_KIND,
    EndpointEvent,
    Event,
    EventValidationError,
    IntelItem,
    NetworkFlow,
    event_to_json_dict,
    parse_event,
    partition_key,
)

__all__ = [
    "EVENT_KINDS",
    "KIND_BY_TOPIC",
    "TOPIC_BY_KIND",
    "EndpointEvent",
    "Event",
    "EventValidationError",
    "IntelItem",
    "NetworkFlow",
    "event_to_json_dict",
    "parse_event",
    "partition_key",
]
