"""The service's one typed settings object, read from the environment (prefix ``IMMUNE_``)."""

from __future__ import annotations

import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from immune_core import __version__


def _default_instance_id() -> str:
    return socket.gethostname()


class Settings(BaseSettings):
    """Everything the service reads from its environment.

    With none of ``database_url``, ``redis_url`` and ``kafka_bootstrap_servers`` set the service runs
    embedded (SQLite under ``data_dir``, in-process bus and hormones) so that it starts anywhere.
    """

    model_config = SettingsConfigDict(env_prefix="IMMUNE_", extra="ignore", frozen=True)

    # Backends: unset means embedded.
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_group_id: str = "immune-core"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    data_dir: Path = Path("./var/immune-core")

    # API surface.
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    api_prefix: str = ""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_events: int = Field(default=500, ge=1)
    rate_limit_per_s: float = Field(default=500.0, ge=0.0, description="per token; 0 disables")
    rate_limit_burst: int = Field(default=1000, ge=1)
    retry_after_s: int = Field(default=5, ge=1)

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
    # Event time (docs/service.md, "Event time"): an event stamped more than this ahead of the service's
    # clock is refused (HTTP 422, Kafka -> DLQ), and the detection watermark never runs further ahead.
    max_clock_skew_s: float = Field(default=300.0, ge=0.0, le=86_400.0)
    # Events this far behind the watermark are still evaluated at their own event time.
    allowed_lateness_s: float = Field(default=600.0, ge=0.0, le=86_400.0)
    db_pool_size: int = Field(default=10, ge=1)
    db_timeout_s: float = Field(default=5.0, gt=0.0)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(token.strip() for token in value.split(",") if token.strip())
        return value

    @field_validator("api_prefix")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            value = "/" + value
        return value

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

    def token_values(self) -> tuple[str, ...]:
        return tuple(token.get_secret_value() for token in self.api_tokens)
