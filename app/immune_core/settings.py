"""The service's one typed settings object, read from the environment (prefix ``IMMUNE_``)."""

from __future__ import annotations

import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from immune_core import __version__
from immune_core.api.tokens import DEFAULT_BARE_ROLES, Role, TokenRegistry, parse_entry, parse_roles


def _default_instance_id() -> str:
    return socket.gethostname()


class Settings(BaseSettings):
    """Everything the service reads from its environment.

    With none of ``database_url``, ``redis_url`` and ``kafka_bootstrap_servers`` set the service runs
    embedded (SQLite under ``data_dir``, in-process bus and hormones) so that it starts anywhere.
    """

    # hide_input_in_errors: a refused value (a URL with a password, a token) never reaches a log.
    model_config = SettingsConfigDict(
        env_prefix="IMMUNE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # Backends: unset means embedded.
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_group_id: str = "immune-core"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    data_dir: Path = Path("./var/immune-core")

    # API surface.
    # Entries `<token>[:<role>+...]` or `sha256:<hex>[:<role>+...]` (see immune_core.api.tokens).
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    api_token_default_roles: str = Field(
        default=DEFAULT_BARE_ROLES, description="roles of an entry that names none, e.g. ingest+read"
    )
    auth_failure_limit: int = Field(
        default=30, ge=1, description="failed authentications per client address per window before 429"
    )
    auth_failure_window_s: int = Field(default=60, ge=1, le=86_400)
    api_prefix: str = ""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    body_timeout_s: float = Field(
        default=30.0, gt=0.0, le=600.0, description="a request body not received in this time: 408"
    )
    max_batch_events: int = Field(default=500, ge=1)
    rate_limit_per_s: float = Field(default=500.0, ge=0.0, description="per token; 0 disables")
    rate_limit_burst: int = Field(default=1000, ge=1)
    retry_after_s: int = Field(default=5, ge=1)

    # Cell population caps (see docs/detection.md): each cell costs a pass per event and its own state.
    max_cells: int = Field(default=16, ge=4, le=256)
    max_cells_per_type: int = Field(default=4, ge=1, le=64)
    # Start with the adaptive layer (helper T, regulatory T, B, cytotoxic T) besides the innate cells:
    # on by default (eight cells; the caps must hold them). IMMUNE_ADAPTIVE_LAYER=false turns it off: the
    # initial population is then the four innate types; adaptive cells can still be created at run time
    # (POST /api/v1/agents). docs/detection.md, "The adaptive layer".
    adaptive_layer: bool = True

    # Identity reported on every response.
    instance_id: str = Field(default_factory=_default_instance_id)
    deployment_color: str = "blue"
    version: str = __version__
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Fault injection for canary tests (off by default, only /api/v1/*).
    fault_latency_ms: float = Field(default=0.0, ge=0.0)
    fault_error_ratio: float = Field(default=0.0, ge=0.0, le=1.0)

    # Coordination.
    lease_ttl_s: float = Field(default=5.0, gt=0.5)
    lease_renew_interval_s: float = Field(default=1.5, gt=0.05)
    # How often a replica re-reads which colour is live (deployment_state.active_color): bounds how long
    # a switch leaves the input unconsumed beyond the group's rebalance.
    active_color_refresh_s: float = Field(default=1.0, gt=0.0)
    homeostasis_interval_s: float = Field(default=1.0, gt=0.05)
    homeostasis_window_s: float = Field(default=60.0, gt=1.0)
    homeostasis_half_life_s: float = Field(default=30.0, gt=0.5)
    lymphnode_interval_s: float = Field(default=2.0, gt=0.05)

    # Pipeline.
    outbox_batch_size: int = Field(default=200, ge=1)
    outbox_poll_interval_s: float = Field(default=0.5, gt=0.0)
    consumer_batch_size: int = Field(default=200, ge=1)
    replay_window_s: float = Field(default=900.0, ge=0.0, description="detection warm-up replay on start")
    replay_max_events: int = Field(default=10_000, ge=0)
    ws_queue_size: int = Field(default=256, ge=1)
    # Between two slices of detection the consumer waits while HTTP requests are in flight, this long at
    # most (processing.foreground). 0: never waits (one turn of the loop only). The ceiling keeps
    # detection at least 5 ms in every 255 under continuous requests, so its lag stays bounded by the
    # load and the consumer's stall check (seconds) never mistakes waiting for a stall.
    detection_max_defer_ms: float = Field(default=20.0, ge=0.0, le=250.0)
    # Event time (docs/service.md, "Event time"): an event stamped more than this ahead of the service's
    # clock is refused (HTTP 422, Kafka -> DLQ), and the detection watermark never runs further ahead.
    max_clock_skew_s: float = Field(default=300.0, ge=0.0, le=86_400.0)
    # Events this far behind the watermark are still evaluated at their own event time.
    allowed_lateness_s: float = Field(default=600.0, ge=0.0, le=86_400.0)
    # The serving process's young-generation GC threshold (allocations net of frees between collections;
    # CPython's default is 700), applied with gc.freeze of the boot heap once booted (``immune-core
    # serve`` only; immune_core.observability.gc_tuning, docs/performance.md). 0: neither (CPython's).
    gc_gen0_threshold: int = Field(default=50_000, ge=0, le=10_000_000)
    db_pool_size: int = Field(default=10, ge=1)
    db_timeout_s: float = Field(default=5.0, gt=0.0)

    # External services of the platform (docs/service.md, "External services"), each optional: unset
    # means the core runs without it, taking that client's named fallback.
    rte_url: str | None = None
    ip_intel_url: str | None = None
    ethical_ai_url: str | None = None
    memory_service_url: str | None = None
    adaptive_immunity_url: str | None = None
    treg_url: str | None = None
    external_timeout_s: float = Field(default=2.0, gt=0.0, le=60.0, description="total per attempt")
    external_connect_timeout_s: float = Field(default=0.5, gt=0.0, le=30.0)
    external_retries: int = Field(default=2, ge=0, le=10, description="idempotent calls only")
    external_backoff_initial_s: float = Field(default=0.05, gt=0.0, le=10.0)
    external_backoff_max_s: float = Field(default=1.0, gt=0.0, le=60.0)
    external_breaker_threshold: int = Field(default=5, ge=1, le=1000, description="consecutive failures")
    external_breaker_reset_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    external_max_concurrency: int = Field(default=16, ge=1, le=1024, description="bulkhead per service")
    external_bulkhead_wait_s: float = Field(default=0.05, ge=0.0, le=10.0)
    external_probe_interval_s: float = Field(
        default=10.0, ge=0.0, description="GET /health of each configured service; 0 disables"
    )
    treg_max_suppression: float = Field(
        default=0.5, ge=0.0, le=1.0, description="the most of the threat score Treg may take away"
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_or_package(cls, value: object) -> object:
        # An image built without a release version has IMMUNE_VERSION empty (app/Dockerfile's ARG).
        return __version__ if value == "" else value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(token.strip() for token in value.split(",") if token.strip())
        return value

    @field_validator("api_token_default_roles")
    @classmethod
    def _known_default_roles(cls, value: str) -> str:
        parse_roles(value, where="IMMUNE_API_TOKEN_DEFAULT_ROLES")
        return value

    @model_validator(mode="after")
    def _tokens_parse(self) -> Settings:
        # Fail at start-up, naming the entry's position (never its secret), rather than at first use.
        self.token_registry  # noqa: B018 - parses and caches
        return self

    @field_validator("api_prefix")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            value = "/" + value
        return value

    @field_validator(
        "rte_url", "ip_intel_url", "ethical_ai_url", "memory_service_url", "adaptive_immunity_url", "treg_url"
    )
    @classmethod
    def _service_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            # Credentials in a URL end up in logs and error messages; the services take none here.
            raise ValueError("must not carry credentials")
        return value.strip().rstrip("/")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @cached_property
    def embedded(self) -> bool:
        """True when no external backend is configured at all."""
        return self.database_url is None and self.redis_url is None and self.kafka_bootstrap_servers is None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "immune-core.sqlite3"

    @cached_property
    def default_token_roles(self) -> frozenset[Role]:
        return parse_roles(self.api_token_default_roles, where="IMMUNE_API_TOKEN_DEFAULT_ROLES")

    @cached_property
    def token_registry(self) -> TokenRegistry:
        return TokenRegistry.parse(
            (token.get_secret_value() for token in self.api_tokens), self.default_token_roles
        )

    def token_values(self) -> tuple[str, ...]:
        """The plain tokens configured (roles stripped; ``sha256:`` entries have none to give)."""
        plain = (
            parse_entry(token.get_secret_value(), self.default_token_roles, index)[1]
            for index, token in enumerate(self.api_tokens)
        )
        return tuple(token for token in plain if token is not None)
