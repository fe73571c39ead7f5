"""Input event models: what the service accepts on Kafka and over HTTP.

Three kinds of event share a small envelope (``event_id``, ``timestamp``, ``kind``, ``schema_version``).
Validation is strict on purpose: events come from sensors we do not control, and a value that is
silently coerced (a port given as ``"22"``, a timestamp given as a Unix number, an unknown field) would
hide a broken producer. Every model forbids unknown fields and bounds every string.

The versioned JSON Schemas in ``events/schemas/<kind>.v1.json`` are generated from these models
(``python -m immune_core.events.schemas``) and a test fails when they drift apart.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeAlias
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from immune_core.events.text import STORABLE_TEXT_PATTERN, check_storable

SCHEMA_VERSION = 1

EventKind: TypeAlias = Literal["network_flow", "endpoint", "intel"]
EVENT_KINDS: tuple[EventKind, ...] = ("network_flow", "endpoint", "intel")
TOPIC_BY_KIND: dict[EventKind, str] = {
    "network_flow": "vertice.network.events",
    "endpoint": "vertice.endpoint.events",
    "intel": "vertice.threats.intel",
}
KIND_BY_TOPIC: dict[str, EventKind] = {topic: kind for kind, topic in TOPIC_BY_KIND.items()}

_MAX_BYTES = 2**53  # the largest integer every JSON consumer (JavaScript included) represents exactly
_HOST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
_SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
_MAX_ERRORS_IN_MESSAGE = 10
_MAX_ERRORS_KEPT = 100


@functools.lru_cache(maxsize=65_536)
def _normalise_ip(value: str) -> str:
    """Canonical text form, so that keys (antigens, intel indicators) compare equal.

    Cached (a refused value raises again, exceptions are not cached): parsing and printing every
    address was ~9 % of a batch's CPU, while a network has far fewer addresses than events.
    """
    if "%" in value:
        # An IPv6 zone id (fe80::1%eth0, RFC 6874) names an interface of the *sensor's* host: it is not
        # part of the address, means nothing to anyone else, and would split one antigen into several.
        raise ValueError(f"{value!r}: IPv6 zone ids (%...) are not accepted; send the address alone")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid IPv4 or IPv6 address") from exc


# -- event time ---------------------------------------------------------------------------------------
# Every instant an event carries lies in [EARLIEST_EVENT_TIME, LATEST_EVENT_TIME): far enough from
# datetime's own limits (years 1 and 9999) that no window, cool-down or time-to-live the service adds to
# or subtracts from an event time can overflow. An event's ``timestamp`` is further bounded by the
# service's clock: at most ``now + max clock skew`` (``IMMUNE_MAX_CLOCK_SKEW_S``), checked by
# ``parse_event`` on every path in (HTTP and Kafka).
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
DEFAULT_MAX_CLOCK_SKEW_S = 300.0
# Years 1970-2199, the same range in a form JSON Schema generators and validators act on.
_YEAR_PATTERN = r"^(19[7-9][0-9]|2[01][0-9]{2})-"
_YEAR_RE = re.compile(_YEAR_PATTERN)
_max_clock_skew = timedelta(seconds=DEFAULT_MAX_CLOCK_SKEW_S)
_RANGE_TEXT = "from 1970-01-01T00:00:00Z and before 2200-01-01T00:00:00Z (years 1970 to 2199)"


def configure_event_time(max_clock_skew_s: float) -> None:
    """Set how far ahead of this service's clock an event's ``timestamp`` may be (seconds, >= 0)."""
    global _max_clock_skew  # one process-wide policy, set once from Settings at start
    if not 0 <= max_clock_skew_s <= 86_400:
        raise ValueError("max_clock_skew_s must be within [0, 86400] seconds")
    _max_clock_skew = timedelta(seconds=max_clock_skew_s)


def max_clock_skew() -> timedelta:
    return _max_clock_skew


def wall_clock() -> datetime:
    """This service's clock (UTC, aware): the reference for the ``timestamp`` bound."""
    return datetime.now(UTC)


def _reject_non_text_timestamp(value: object) -> object:
    # Lax pydantic would read 1700000000 (or the text "1700000000") as a Unix time; RFC 3339 text is the
    # contract, with a year the service can do arithmetic with.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        if not _YEAR_RE.match(value):
            raise ValueError(f"must be an RFC 3339 date-time string {_RANGE_TEXT}, e.g. 2026-01-01T12:00:00Z")
        return value
    raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-01-01T12:00:00Z")


def _within_time_range(value: datetime) -> datetime:
    if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
        raise ValueError(f"must be {_RANGE_TEXT}")
    return value


def _normalise_domain(value: str) -> str:
    if not _DOMAIN_RE.match(value):
        raise ValueError(f"{value!r} is not a valid domain name")
    return value.rstrip(".").lower()


IPAddressText = Annotated[
    str,
    StringConstraints(min_length=2, max_length=45, strip_whitespace=True),
    AfterValidator(_normalise_ip),
    WithJsonSchema({"type": "string", "maxLength": 45, "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
]
_TIME_RANGE_SCHEMA: dict[str, Any] = {
    "pattern": _YEAR_PATTERN,
    "formatMinimum": "1970-01-01T00:00:00Z",
    "formatExclusiveMaximum": "2200-01-01T00:00:00Z",
}
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_reject_non_text_timestamp),
    AfterValidator(_within_time_range),
    Field(json_schema_extra=_TIME_RANGE_SCHEMA),
]
HostId = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_HOST_ID_PATTERN)]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]
ByteCount = Annotated[StrictInt, Field(ge=0, le=_MAX_BYTES)]

# Free text: anything but what the database cannot store (NUL, lone surrogates; see events/text.py).
# The pattern is for the published schema; the validator gives the clearer message.
_STORABLE_CHECK = AfterValidator(check_storable)
_STORABLE_SCHEMA = Field(json_schema_extra={"pattern": STORABLE_TEXT_PATTERN})
Name = Annotated[str, StringConstraints(min_length=1, max_length=255), _STORABLE_CHECK, _STORABLE_SCHEMA]
CommandLine = Annotated[str, StringConstraints(max_length=4096), _STORABLE_CHECK, _STORABLE_SCHEMA]
Description = Annotated[str, StringConstraints(max_length=1024), _STORABLE_CHECK, _STORABLE_SCHEMA]
DomainName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253),
    AfterValidator(_normalise_domain),
]
Sha256 = Annotated[
    str, StringConstraints(min_length=64, max_length=64, pattern=_SHA256_PATTERN, to_lower=True)
]

Protocol: TypeAlias = Literal["tcp", "udp", "icmp", "gre", "esp", "sctp", "other"]
# How the connection ended, as flow sensors (Zeek conn_state, NetFlow TCP flags) summarise it.
ConnectionState: TypeAlias = Literal["established", "rejected", "reset", "timeout", "attempted"]
EndpointAction: TypeAlias = Literal[
    "process_start",
    "process_stop",
    "file_write",
    "file_read",
    "network_connect",
    "dns_query",
    "login",
    "login_failed",
    "privilege_change",
    "module_load",
]
IndicatorType: TypeAlias = Literal["ip", "domain", "sha256"]
Severity: TypeAlias = Literal["low", "medium", "high", "critical"]


class _EventEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=4096)

    event_id: UUID
    timestamp: Timestamp = Field(
        description="When the event happened (RFC 3339, with an offset). At most the service's clock plus "
        f"IMMUNE_MAX_CLOCK_SKEW_S (default {DEFAULT_MAX_CLOCK_SKEW_S:g} s): a later event is refused."
    )
    schema_version: Literal[1] = 1

    @functools.cached_property
    def event_key(self) -> str:
        """``str(event_id)``, formatted once per event: the intake, storage and the consumer key their
        sets and rows by it several times per event, and a UUID's ``str()`` costs ~1 µs each time
        (docs/performance.md). Not a field: absent from dumps, schemas and equality. Events are never
        copied with a new ``event_id`` (``model_copy(update=...)`` would keep the cached text)."""
        return str(self.event_id)

    @field_validator("timestamp")
    @classmethod
    def _not_ahead_of_the_clock(cls, value: datetime, info: ValidationInfo) -> datetime:
        # The bound needs a clock, which only parse_event supplies (as validation context); models built
        # in code (tests, the simulator) keep the static range alone.
        context = info.context if isinstance(info.context, dict) else {}
        not_after = context.get("not_after")
        if isinstance(not_after, datetime) and value > not_after:
            skew = context.get("max_skew", _max_clock_skew)
            ahead = (value - (not_after - skew)).total_seconds()
            raise ValueError(
                f"is {ahead:.0f} s ahead of this service's clock; events more than "
                f"{skew.total_seconds():g} s in the future are refused (IMMUNE_MAX_CLOCK_SKEW_S): "
                "check the sensor's clock"
            )
        return value


class NetworkFlow(_EventEnvelope):
    """One network connection summary seen by a sensor on ``host_id``."""

    kind: Literal["network_flow"] = "network_flow"
    host_id: HostId
    src_ip: IPAddressText
    dst_ip: IPAddressText
    src_port: Port | None = None
    dst_port: Port
    protocol: Protocol
    bytes_in: ByteCount
    bytes_out: ByteCount
    packets: ByteCount | None = None
    duration_ms: Annotated[StrictInt, Field(ge=0, le=86_400_000)] | None = None
    conn_state: ConnectionState | None = None
    domain: DomainName | None = None


class EndpointEvent(_EventEnvelope):
    """One process-level event reported by an endpoint agent on ``host_id``."""

    kind: Literal["endpoint"] = "endpoint"
    host_id: HostId
    process: Name
    parent_process: Name
    user: Name
    action: EndpointAction
    signed: StrictBool
    pid: Annotated[StrictInt, Field(ge=0, le=2**32)] | None = None
    command_line: CommandLine | None = None
    sha256: Sha256 | None = None
    domain: DomainName | None = None
    remote_ip: IPAddressText | None = None


class IntelItem(_EventEnvelope):
    """A threat-intelligence indicator, live until ``expires_at``."""

    kind: Literal["intel"] = "intel"
    # indicator_type is declared before indicator so the indicator's validator can read it.
    indicator_type: IndicatorType
    indicator: Annotated[
        str,
        StringConstraints(min_length=1, max_length=253, strip_whitespace=True),
        Field(json_schema_extra={"pattern": STORABLE_TEXT_PATTERN}),
    ]
    severity: Severity
    source: Name
    expires_at: Timestamp
    description: Description | None = None

    @field_validator("indicator")
    @classmethod
    def _indicator_matches_type(cls, value: str, info: ValidationInfo) -> str:
        # Canonical form per type, so the macrophage's lookups are plain dictionary hits.
        indicator_type = info.data.get("indicator_type")
        if indicator_type == "ip":
            return _normalise_ip(value)
        if indicator_type == "domain":
            return _normalise_domain(value)
        if indicator_type == "sha256":
            if not re.fullmatch(_SHA256_PATTERN, value):
                raise ValueError(f"{value!r} is not a SHA-256 hex digest (64 hex characters)")
            return value.lower()
        return value  # indicator_type itself failed and is reported on its own

    @field_validator("expires_at")
    @classmethod
    def _expires_after_timestamp(cls, value: datetime, info: ValidationInfo) -> datetime:
        timestamp = info.data.get("timestamp")
        if timestamp is not None and value <= timestamp:
            raise ValueError("must be later than timestamp")
        return value


Event = Annotated[NetworkFlow | EndpointEvent | IntelItem, Field(discriminator="kind")]
MODEL_BY_KIND: dict[EventKind, type[NetworkFlow] | type[EndpointEvent] | type[IntelItem]] = {
    "network_flow": NetworkFlow,
    "endpoint": EndpointEvent,
    "intel": IntelItem,
}
_EVENT_ADAPTER: TypeAdapter[NetworkFlow | EndpointEvent | IntelItem] = TypeAdapter(Event)


class EventValidationError(ValueError):
    """An input event that does not satisfy its schema; ``message`` is meant for the producer."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


def _field_path(loc: tuple[int | str, ...], kind: object) -> str:
    # A discriminated union puts the tag first in the location; the producer never wrote it.
    parts = list(loc)
    if parts and parts[0] == kind:
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(event)"


def _describe(exc: ValidationError, kind: object) -> tuple[str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        path = _field_path(tuple(error["loc"]), kind)
        reason = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            reason = "unknown field (not in the schema)"
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = "kind"
            reason = f"must be one of {', '.join(EVENT_KINDS)}"
        errors.append({"field": path, "reason": reason, "type": error["type"]})
    # A message stays readable (and a log line bounded) even for an event with thousands of bad fields.
    shown = errors[:_MAX_ERRORS_IN_MESSAGE]
    message = "; ".join(f"{e['field']}: {e['reason']}" for e in shown)
    if len(errors) > len(shown):
        message += f"; and {len(errors) - len(shown)} more errors"
    return f"invalid event: {message}", errors[:_MAX_ERRORS_KEPT]


def parse_event(data: object, *, now: datetime | None = None) -> NetworkFlow | EndpointEvent | IntelItem:
    """Validate one event given as a mapping, JSON text or JSON bytes.

    ``now`` is the reference clock for the ``timestamp`` bound (default: this service's wall clock): a
    ``timestamp`` later than ``now`` + ``max_clock_skew()`` is refused, as is any instant outside
    [``EARLIEST_EVENT_TIME``, ``LATEST_EVENT_TIME``) and any text the database cannot store.
    Raises ``EventValidationError`` whose message names every failing field and why.
    """
    skew = _max_clock_skew
    context = {"not_after": (now or wall_clock()) + skew, "max_skew": skew}
    try:
        if isinstance(data, str | bytes | bytearray):
            return _EVENT_ADAPTER.validate_json(data, context=context)
        if not isinstance(data, dict):
            raise EventValidationError(
                f"invalid event: expected a JSON object, got {type(data).__name__}",
                [{"field": "(event)", "reason": "expected a JSON object", "type": "type_error"}],
            )
        return _EVENT_ADAPTER.validate_python(data, context=context)
    except ValidationError as exc:
        kind = data.get("kind") if isinstance(data, dict) else _peek_kind(exc)
        message, errors = _describe(exc, kind)
        raise EventValidationError(message, errors) from None


def _peek_kind(exc: ValidationError) -> object:
    for error in exc.errors(include_url=False, include_input=False):
        if error["loc"] and error["loc"][0] in EVENT_KINDS:
            return error["loc"][0]
    return None


def partition_key(event: NetworkFlow | EndpointEvent | IntelItem) -> str:
    """Kafka key that sends all of one antigen's events to the same consumer.

    Flows are keyed by source address (the neutrophil counts fan-out per source, and outbound
    behaviour of a host has the host's address as source); endpoint events by host; intel by
    indicator (every replica must still read all intel: see docs/detection.md).
    """
    if isinstance(event, NetworkFlow):
        return f"src:{event.src_ip}"
    if isinstance(event, EndpointEvent):
        return f"host:{event.host_id}"
    return f"intel:{event.indicator_type}:{event.indicator}"


def event_to_json_dict(event: NetworkFlow | EndpointEvent | IntelItem) -> dict[str, Any]:
    """The JSON-ready form (what producers send and what storage keeps)."""
    return event.model_dump(mode="json", exclude_none=True)
