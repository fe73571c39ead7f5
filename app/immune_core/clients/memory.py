"""Memory service client: B-cell recall consults the platform's long-term memory.

Implements ``immune_core.adaptive.recall.MemoryRecall``. Fallback ``local_memory_only``: the failure is
counted and raised to the recall hook, which then recalls from the core's own memory alone.
``remember`` shares a detector the core formed; it is not idempotent, so it is never retried, and a
failure only means the platform does not learn it from this replica (fallback ``not_shared``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from immune_core.adaptive.recall import RecalledDetector, RecallQuery
from immune_core.clients.base import DependencyFailure, ServiceClient

FALLBACK = "local_memory_only"
FALLBACK_REMEMBER = "not_shared"


def _detector(raw: dict[str, Any]) -> RecalledDetector:
    # Only the fields the core's model knows: the contract may carry more than this version reads.
    return RecalledDetector.model_validate(
        {k: v for k, v in raw.items() if k in RecalledDetector.model_fields}
    )


class MemoryServiceClient(ServiceClient):
    """The platform's Memory service, the core's ``MemoryRecall`` (module docstring: its fallbacks)."""

    service = "memory"
    name = "memory-service"

    async def recall(self, query: RecallQuery) -> Sequence[RecalledDetector]:
        """Detectors near ``query`` (nearest first, at most ``query.limit``); raises ``DependencyFailure``
        after counting the fallback. A detector of another antigen type than asked, or one the core's
        model refuses, breaks the contract (counted, seen by the breaker), and so does one of another
        feature space."""
        asked = query.model_dump(mode="json")

        def fits(raw: dict[str, list[dict[str, Any]]]) -> str | None:
            for index, detector in enumerate(raw["detectors"]):
                if detector["antigen_type"] != query.antigen_type:
                    return f"detectors[{index}] is of antigen type {detector['antigen_type']}"
                if detector["space"] != query.space:
                    return f"detectors[{index}] lives in feature space {detector['space']}, not {query.space}"
                try:
                    _detector(detector)
                except ValidationError as exc:
                    return f"detectors[{index}]: {exc.error_count()} field(s) the core refuses"
            return None

        try:
            raw = await self.call("recall", body=asked, check=fits)
        except DependencyFailure:
            self.fallback(FALLBACK)
            raise
        return [_detector(detector) for detector in raw["detectors"][: query.limit]]

    async def remember(self, detector: RecalledDetector) -> bool:
        """Share ``detector`` with the platform; False (fallback taken) when the service did not take it."""
        try:
            await self.call("remember", body=detector.model_dump(mode="json"))
        except DependencyFailure:
            self.fallback(FALLBACK_REMEMBER)
            return False
        return True
