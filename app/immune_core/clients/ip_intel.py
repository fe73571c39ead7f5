"""IP intelligence client: the reputation of an address, cached for as long as the verdict holds.

Fallback ``no_enrichment``: the threat is stored as the cells raised it and no intel is fed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import httpx

from immune_core.clients.base import ClientConfig, DependencyFailure, ServiceClient
from immune_core.clients.metrics import ClientMetrics

FALLBACK = "no_enrichment"
_CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class Reputation:
    """IP intelligence's verdict on one address, reusable for ``ttl_s`` seconds; ``score`` in [0, 1]."""

    ip: str
    reputation: Literal["malicious", "suspicious", "benign", "unknown"]
    score: float
    categories: tuple[str, ...]
    ttl_s: int
    source: str


class IPIntelClient(ServiceClient):
    """The IP intelligence service: reputations of addresses, cached for each verdict's ``ttl_s`` seconds
    (at most 10,000 addresses; fallback ``no_enrichment``)."""

    service = "ip_intel"

    def __init__(
        self,
        config: ClientConfig,
        metrics: ClientMetrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config, metrics, transport=transport)
        # address -> (valid until, monotonic seconds; verdict): a scan raises many threats about one
        # address, and the verdict's own ttl says how long it may be reused.
        self._cache: OrderedDict[str, tuple[float, Reputation]] = OrderedDict()

    async def reputation(self, ip: str) -> Reputation | None:
        """The reputation of ``ip``, or None (fallback taken) when the service gave no valid answer."""
        cached = self._cache.get(ip)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            raw = await self.call("lookup", path_params={"ip": ip})
        except DependencyFailure:
            self.fallback(FALLBACK)
            return None
        verdict = Reputation(
            ip=str(raw["ip"]),
            reputation=raw["reputation"],
            score=float(raw["score"]),
            categories=tuple(raw["categories"]),
            ttl_s=int(raw["ttl_s"]),
            source=str(raw.get("source") or "ip-intelligence"),
        )
        if verdict.ttl_s > 0:
            self._cache[ip] = (time.monotonic() + verdict.ttl_s, verdict)
            self._cache.move_to_end(ip)
            while len(self._cache) > _CACHE_LIMIT:
                self._cache.popitem(last=False)
        return verdict
