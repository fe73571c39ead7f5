"""The threat: what the innate layer concludes about one antigen, with the evidence behind it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, TypeAlias
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

ThreatCategory: TypeAlias = Literal[
    "port_scan",
    "network_sweep",
    "brute_force",
    "exfiltration",
    "beaconing",
    "known_bad_indicator",
    "unsigned_process",
    "unknown_process",
    "behaviour_anomaly",
]
AntigenType: TypeAlias = Literal["source_ip", "host", "process"]
ThreatSeverity: TypeAlias = Literal["low", "medium", "high", "critical"]

SEVERITY_RANK: dict[ThreatSeverity, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
SEVERITIES: tuple[ThreatSeverity, ...] = ("low", "medium", "high", "critical")

# Threat ids are derived, not random: two replicas that process the same event after a consumer-group
# rebalance produce the same id, so storage deduplicates them.
_THREAT_NAMESPACE = UUID("5f1b0c3e-6d0a-4f8e-9a57-2f7f6a1d9c41")


def threat_signature(category: ThreatCategory, antigen_type: AntigenType, antigen: str) -> str:
    """The stable key that immunological memory and de-duplication use."""
    return f"{category}:{antigen_type}:{antigen}"


def derive_threat_id(signature: str, first_event_id: UUID) -> UUID:
    return uuid5(_THREAT_NAMESPACE, f"{signature}|{first_event_id}")


class Evidence(BaseModel):
    """One cell's reason for contributing to a threat, in words an analyst can check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cell: str = Field(description="Id of the cell instance, e.g. neutrophil-1.")
    cell_type: str
    lineage: str | None = Field(
        default=None,
        description="Id of the cell this one was cloned from (its own id if not a clone); evidence of one "
        "lineage counts once in the confidence.",
    )
    reason: str
    at: AwareDatetime


class Advice(BaseModel):
    """What an external service said about a threat after the cells raised it (RTE triage, IP
    intelligence; docs/service.md, "External services")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str = Field(description="rte or ip_intel")
    verdict: str = Field(description="RTE: escalate | confirm | dismiss; IP intel: the reputation")
    detail: str = Field(max_length=1000)


class Threat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threat_id: UUID
    detected_at: AwareDatetime = Field(description="Event time of the event that raised the threat.")
    category: ThreatCategory
    antigen_type: AntigenType
    antigen: str
    severity: ThreatSeverity
    confidence: float = Field(ge=0.0, le=1.0)
    mcav: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Dendritic cells' mature context antigen value."
    )
    cells: list[str] = Field(description="Types of the cells that contributed.")
    evidence: list[Evidence]
    event_ids: list[UUID]
    signature: str
    host_id: str | None = None
    advice: list[Advice] = Field(
        default_factory=list, description="External services consulted about this threat, and their verdicts."
    )

    @property
    def severity_rank(self) -> int:
        return SEVERITY_RANK[self.severity]


def merge_confidence(contributions: Iterable[tuple[str, float]]) -> float:
    """Confidence of a threat from ``(lineage, confidence)`` contributions, each confidence in [0, 1].

    Noisy-OR (Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988, sec. 4.3.2) over independent
    sources: ``1 - prod(1 - c_i)``. Its independence assumption does not hold for clones (same
    parameters, same learned state, same input: the same conclusion), so each lineage contributes only
    its strongest confidence and the noisy-OR runs across lineages. Returns 0.0 for no contributions;
    rounded to 4 decimals.
    """
    strongest: dict[str, float] = {}
    for lineage, confidence in contributions:
        strongest[lineage] = max(confidence, strongest.get(lineage, 0.0))
    miss = 1.0
    for confidence in strongest.values():
        miss *= 1.0 - confidence
    return round(1.0 - miss, 4)


def max_severity(severities: list[ThreatSeverity]) -> ThreatSeverity:
    return max(severities, key=SEVERITY_RANK.__getitem__)


def detected_at_of(times: list[datetime]) -> datetime:
    return max(times)
