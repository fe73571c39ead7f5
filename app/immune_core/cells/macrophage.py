"""Macrophage: recognises known pathogens by matching events against live threat intelligence.

Indicators come from intel events (kind ``intel``) kept by the engine's shared ``IntelStore``; an
item stops matching once the event clock passes its ``expires_at``. Matched fields:

* network flow: ``src_ip`` (antigen ``source_ip``: the bad address itself), ``dst_ip`` and ``domain``
  (antigen ``host``: the host that reached out to the bad address is the one at risk);
* endpoint event: ``sha256`` (antigen ``process`` = ``host/process``), ``domain`` and ``remote_ip``
  (antigen ``host``).

A match is a ``known_bad_indicator`` finding whose severity is the intel item's severity and whose
confidence is ``confidence_by_severity``; it is also a PAMP signal of that strength. Events that match
nothing give no signal: absence from a feed is not evidence of safety.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen, CellOutput, Finding, Signal
from immune_core.detection.threat import ThreatSeverity
from immune_core.events.models import EndpointEvent, IndicatorType, IntelItem, NetworkFlow


def _default_confidence() -> dict[ThreatSeverity, float]:
    return {"low": 0.5, "medium": 0.7, "high": 0.85, "critical": 0.95}


class MacrophageParams(CellParams):
    confidence_by_severity: dict[ThreatSeverity, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=_default_confidence
    )
    match_source: bool = True
    match_destination: bool = True
    match_endpoint: bool = True


class Macrophage(Cell[MacrophageParams]):
    cell_type = "macrophage"
    params_model = MacrophageParams
    description = "Matches addresses, domains and file hashes against live threat intelligence."

    def state_summary(self) -> dict[str, int]:
        return {"matches": self.counters["matches"]}

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        output = CellOutput()
        for antigen, indicator_type, value, role in self._candidates(event):
            item = context.intel.lookup(indicator_type, value, context.now)
            if item is not None:
                self._report(output, event, antigen, item, role, context)
        return output

    def _candidates(self, event: AnyEvent) -> list[tuple[Antigen, IndicatorType, str, str]]:
        p = self.params
        found: list[tuple[Antigen, IndicatorType, str, str]] = []
        if isinstance(event, NetworkFlow):
            host = Antigen("host", event.host_id)
            if p.match_source:
                found.append((Antigen("source_ip", event.src_ip), "ip", event.src_ip, "source address"))
            if p.match_destination:
                found.append((host, "ip", event.dst_ip, "destination address"))
                if event.domain:
                    found.append((host, "domain", event.domain, "destination domain"))
        elif isinstance(event, EndpointEvent) and p.match_endpoint:
            host = Antigen("host", event.host_id)
            if event.sha256:
                process = Antigen("process", f"{event.host_id}/{event.process}")
                found.append((process, "sha256", event.sha256, f"hash of {event.process}"))
            if event.domain:
                found.append((host, "domain", event.domain, f"domain queried by {event.process}"))
            if event.remote_ip:
                found.append((host, "ip", event.remote_ip, f"remote address of {event.process}"))
        return found

    def _report(
        self,
        output: CellOutput,
        event: AnyEvent,
        antigen: Antigen,
        item: IntelItem,
        role: str,
        context: CellContext,
    ) -> None:
        self.counters["matches"] += 1
        confidence = self.params.confidence_by_severity.get(item.severity, 0.7)
        host_id = event.host_id if isinstance(event, NetworkFlow | EndpointEvent) else None
        reason = (
            f"{role} {item.indicator} is a known-bad {item.indicator_type} "
            f"(source {item.source}, severity {item.severity}, expires {item.expires_at.isoformat()})"
        )
        output.findings.append(
            Finding(
                antigen=antigen,
                category="known_bad_indicator",
                severity=item.severity,
                confidence=confidence,
                reason=reason,
                at=context.now,
                event_ids=(event.event_id,),
                cell_id=self.cell_id,
                cell_type=self.cell_type,
                host_id=host_id,
            )
        )
        output.signals.append(
            Signal(
                antigen,
                "pamp",
                confidence,
                self.cell_id,
                reason,
                context.now,
                event.event_id,
                "known_bad_indicator",
                host_id,
            )
        )
        output.cytokines.append(
            Cytokine.emit(
                "tnf",
                self.cell_id,
                antigen.type,
                antigen.value,
                context.now,
                {
                    "indicator": item.indicator,
                    "indicator_type": item.indicator_type,
                    "severity": item.severity,
                    "intel_source": item.source,
                },
            )
        )
