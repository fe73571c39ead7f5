"""The six external services, built once from the settings; each is None when its URL is unset.

``ethical_ai`` is the ``responses.validation.ActionValidator`` to give ``validate_action`` (None: the
documented safe default decides); ``memory`` is the ``adaptive.recall.MemoryRecall`` for B-cell recall
(None: local memory only).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from typing import Literal, TypeVar

from immune_core.clients.adaptive_immunity import AdaptiveImmunityClient
from immune_core.clients.base import ClientConfig, DependencyState, ServiceClient
from immune_core.clients.ethical_ai import EthicalAIClient
from immune_core.clients.ip_intel import IPIntelClient
from immune_core.clients.memory import MemoryServiceClient
from immune_core.clients.metrics import ClientMetrics
from immune_core.clients.rte import RTEClient
from immune_core.clients.treg import TregClient
from immune_core.settings import Settings

ServiceState = DependencyState | Literal["not_configured"]
C = TypeVar("C", bound=ServiceClient)


def client_config(settings: Settings, url: str) -> ClientConfig:
    """The client settings (timeouts and backoff in seconds, retries, breaker, bulkhead) of the
    ``IMMUNE_EXTERNAL_*`` settings, for the service at ``url``."""
    s = settings
    return ClientConfig(
        base_url=url,
        timeout_s=s.external_timeout_s,
        connect_timeout_s=s.external_connect_timeout_s,
        retries=s.external_retries,
        backoff_initial_s=s.external_backoff_initial_s,
        backoff_max_s=s.external_backoff_max_s,
        breaker_threshold=s.external_breaker_threshold,
        breaker_reset_s=s.external_breaker_reset_s,
        max_concurrency=s.external_max_concurrency,
        bulkhead_wait_s=s.external_bulkhead_wait_s,
    )


@dataclass
class ExternalServices:
    """The six clients by service name; None where the service's URL is unset."""

    rte: RTEClient | None = None
    ip_intel: IPIntelClient | None = None
    ethical_ai: EthicalAIClient | None = None
    memory: MemoryServiceClient | None = None
    adaptive_immunity: AdaptiveImmunityClient | None = None
    treg: TregClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ClientMetrics) -> ExternalServices:
        """A client for each ``IMMUNE_*_URL`` set, all counting into ``metrics``."""

        def build(kind: type[C], url: str | None) -> C | None:
            return None if url is None else kind(client_config(settings, url), metrics)

        s = settings
        return cls(
            rte=build(RTEClient, s.rte_url),
            ip_intel=build(IPIntelClient, s.ip_intel_url),
            ethical_ai=build(EthicalAIClient, s.ethical_ai_url),
            memory=build(MemoryServiceClient, s.memory_service_url),
            adaptive_immunity=build(AdaptiveImmunityClient, s.adaptive_immunity_url),
            treg=build(TregClient, s.treg_url),
        )

    def configured(self) -> list[ServiceClient]:
        """The clients that are set, in field order."""
        return [client for f in fields(self) if (client := getattr(self, f.name)) is not None]

    async def states(self) -> dict[str, ServiceState]:
        """Every one of the six by name: up, degraded, open_circuit, unknown or not_configured."""
        report: dict[str, ServiceState] = {}
        for f in fields(self):
            client: ServiceClient | None = getattr(self, f.name)
            report[f.name] = "not_configured" if client is None else await client.state()
        return report

    async def probe_all(self) -> None:
        """One ``GET /health`` per configured service, concurrently (each bounded by its timeouts)."""
        await asyncio.gather(*(client.probe() for client in self.configured()))

    async def aclose(self) -> None:
        """Closes every configured client's connections."""
        for client in self.configured():
            await client.aclose()
