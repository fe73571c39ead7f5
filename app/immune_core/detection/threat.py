"""The threat: what the innate layer concludes about one antigen, with the evidence behind it."""

from __future__ import annotations

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
    reason: str
    at: AwareDatetime


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

    @property
    def severity_rank(self) -> int:
        return SEVERITY_RANK[self.severity]


def max_severity(severities: list[ThreatSeverity]) -> ThreatSeverity:
    return max(severities, key=SEVERITY_RANK.__getitem__)


def detected_at_of(times: list[datetime]) -> datetime:
    return max(times)
