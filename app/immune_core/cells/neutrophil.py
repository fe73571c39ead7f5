"""Neutrophil: the first responder. Fast burst detection per source address over a sliding window.

Per source IP the cell keeps the flows of the last ``window_s`` seconds of event time and counts,
incrementally (each flow is added once and evicted once, so the cost per event is O(1) amortised):

* distinct destination ports on any single destination host -> ``port_scan`` (vertical scan)
  when >= ``port_scan_ports``;
* distinct destination hosts on any single port -> ``network_sweep`` (horizontal scan) when
  >= ``sweep_hosts``;
* attempts against one authentication service (``auth_ports``): flows that failed (rejected, reset,
  attempted, timeout), flows to an interactive login service (``guess_ports``: SSH, RDP, VNC, telnet,
  FTP) that carried at most ``attempt_max_bytes`` upstream -- the shape of one password guess -- and
  ``login_failed`` endpoint events that name the remote address -> ``brute_force`` when
  >= ``brute_force_attempts``;
* failed connections of any kind -> a danger signal (a burst of failures is abnormal even when it
  matches none of the patterns above).

Dendritic-cell signals for the ``source_ip`` antigen, one per flow: PAMP (strength = confidence) when a
pattern fires; danger (strength = the highest count/threshold ratio, capped at 1) when that ratio
reaches ``danger_ratio``; otherwise safe (``safe_strength``) for a flow that completed normally.
A finding for one (source, category) is re-reported at most once per window.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, TypeVar
from uuid import UUID

from pydantic import Field

from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen, CellOutput, Finding, Signal
from immune_core.detection.threat import ThreatCategory, ThreatSeverity
from immune_core.events.models import EndpointEvent, NetworkFlow

K = TypeVar("K")
V = TypeVar("V")
_FAILED_STATES = frozenset({"rejected", "reset", "attempted", "timeout"})
_DEFAULT_AUTH_PORTS = (21, 22, 23, 110, 143, 389, 445, 1433, 3306, 3389, 5432, 5900, 5985, 5986)
# Interactive logins open one connection per guess; database and file protocols are pooled by
# applications, so a short established flow there is ordinary and only failures count.
_DEFAULT_GUESS_PORTS = (21, 22, 23, 3389, 5900)


Port = Annotated[int, Field(ge=0, le=65_535)]


class NeutrophilParams(CellParams):
    # Upper bounds keep one cell's cost (state per source, work per flow) within about 4x the default.
    window_s: float = Field(default=60.0, gt=0, le=3600)
    port_scan_ports: int = Field(default=20, ge=2, le=65_536)
    sweep_hosts: int = Field(default=20, ge=2, le=65_536)
    brute_force_attempts: int = Field(default=10, ge=2, le=100_000)
    attempt_max_bytes: int = Field(default=5_000, ge=0, le=1_000_000_000)
    auth_ports: tuple[Port, ...] = Field(default=_DEFAULT_AUTH_PORTS, min_length=1, max_length=64)
    guess_ports: tuple[Port, ...] = Field(default=_DEFAULT_GUESS_PORTS, max_length=64)
    danger_ratio: float = Field(default=0.5, gt=0, le=1)
    safe_strength: float = Field(default=0.5, ge=0, le=1)
    max_sources: int = Field(default=50_000, ge=1, le=200_000)


@dataclass(slots=True)
class _Contact:
    at: datetime
    dst_ip: str
    dst_port: int | None  # None: a login_failed endpoint event (counts as an attempt only)
    failed: bool
    attempt_target: tuple[str, int] | None
    event_id: UUID


@dataclass(slots=True)
class _SourceWindow:
    contacts: deque[_Contact] = field(default_factory=deque)
    ports_by_host: dict[str, Counter[int]] = field(default_factory=dict)
    hosts_by_port: dict[int, Counter[str]] = field(default_factory=dict)
    attempts: Counter[tuple[str, int]] = field(default_factory=Counter)
    failed: int = 0
    last_reported: dict[ThreatCategory, datetime] = field(default_factory=dict)

    def add(self, contact: _Contact) -> None:
        self.contacts.append(contact)
        if contact.dst_port is not None:
            self.ports_by_host.setdefault(contact.dst_ip, Counter())[contact.dst_port] += 1
            self.hosts_by_port.setdefault(contact.dst_port, Counter())[contact.dst_ip] += 1
        if contact.attempt_target is not None:
            self.attempts[contact.attempt_target] += 1
        self.failed += contact.failed

    def evict_before(self, horizon: datetime) -> None:
        while self.contacts and self.contacts[0].at < horizon:
            old = self.contacts.popleft()
            if old.dst_port is not None:
                _decrement(self.ports_by_host, old.dst_ip, old.dst_port)
                _decrement(self.hosts_by_port, old.dst_port, old.dst_ip)
            if old.attempt_target is not None:
                self.attempts[old.attempt_target] -= 1
                if self.attempts[old.attempt_target] <= 0:
                    del self.attempts[old.attempt_target]
            self.failed -= old.failed


def _decrement(table: dict[K, Counter[V]], outer: K, inner: V) -> None:
    counts = table[outer]
    counts[inner] -= 1
    if counts[inner] <= 0:
        del counts[inner]
        if not counts:
            del table[outer]


class Neutrophil(Cell[NeutrophilParams]):
    cell_type = "neutrophil"
    params_model = NeutrophilParams
    description = "Burst detection per source: port scans, network sweeps, brute force."

    def __init__(self, params: NeutrophilParams, cell_id: str) -> None:
        super().__init__(params, cell_id)
        self._sources: OrderedDict[str, _SourceWindow] = OrderedDict()
        self._auth_ports = frozenset(params.auth_ports)
        self._guess_ports = frozenset(params.guess_ports)
        self._window = timedelta(seconds=params.window_s)

    def state_summary(self) -> dict[str, int]:
        return {"tracked_sources": len(self._sources)}

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        sourced = self._contact_of(event)
        if sourced is None:
            return CellOutput()
        source, contact = sourced
        window = self._window_for(source)
        window.evict_before(context.now - self._window)
        window.add(contact)
        return self._assess(source, window, event, contact, context.now)

    def _contact_of(self, event: AnyEvent) -> tuple[str, _Contact] | None:
        """The source address an event counts against, and what it counts as."""
        if isinstance(event, NetworkFlow):
            failed = event.conn_state in _FAILED_STATES
            short_guess = (
                event.dst_port in self._guess_ports and event.bytes_out <= self.params.attempt_max_bytes
            )
            is_attempt = event.dst_port in self._auth_ports and (failed or short_guess)
            target = (event.dst_ip, event.dst_port) if is_attempt else None
            contact = _Contact(event.timestamp, event.dst_ip, event.dst_port, failed, target, event.event_id)
            return event.src_ip, contact
        if isinstance(event, EndpointEvent) and event.action == "login_failed" and event.remote_ip:
            # The victim is the reporting host; the port is unknown, so the attempt is keyed on port 0.
            login = _Contact(event.timestamp, event.host_id, None, True, (event.host_id, 0), event.event_id)
            return event.remote_ip, login
        return None

    def _window_for(self, source: str) -> _SourceWindow:
        window = self._sources.get(source)
        if window is None:
            window = self._sources[source] = _SourceWindow()
            while len(self._sources) > self.params.max_sources:
                self._sources.popitem(last=False)  # least recently active source
        else:
            self._sources.move_to_end(source)
        return window

    def _assess(
        self, source: str, window: _SourceWindow, event: AnyEvent, contact: _Contact, now: datetime
    ) -> CellOutput:
        p = self.params
        antigen = Antigen("source_ip", source)
        host_id = event.host_id if isinstance(event, NetworkFlow | EndpointEvent) else None
        output = CellOutput()

        ports_host, ports = _widest(window.ports_by_host)
        sweep_port, hosts = _widest(window.hosts_by_port)
        target, attempts = window.attempts.most_common(1)[0] if window.attempts else (None, 0)
        patterns: list[tuple[ThreatCategory, int, int]] = [
            ("port_scan", ports, p.port_scan_ports),
            ("network_sweep", hosts, p.sweep_hosts),
            ("brute_force", attempts, p.brute_force_attempts),
        ]
        ratio = max(count / threshold for _, count, threshold in patterns)
        ratio = max(ratio, window.failed / p.port_scan_ports)

        for category, count, threshold in patterns:
            if count < threshold:
                continue
            # Formatted only for a pattern that fires: on every event it was a fifth of this cell's time.
            if category == "port_scan":
                reason = f"{ports} distinct ports probed on {ports_host} within {p.window_s:g} s"
            elif category == "network_sweep":
                reason = f"{hosts} distinct hosts contacted on port {sweep_port} within {p.window_s:g} s"
            else:
                reason = (
                    f"{attempts} short or failed authentication attempts against "
                    f"{_target_text(target)} within {p.window_s:g} s"
                )
            confidence = round(min(0.99, 1.0 - 0.4 * threshold / count), 3)
            output.signals.append(
                Signal(
                    antigen, "pamp", confidence, self.cell_id, reason, now, event.event_id, category, host_id
                )
            )
            last = window.last_reported.get(category)
            if last is not None and now - last < self._window:
                continue
            window.last_reported[category] = now
            evidence_ids = tuple(c.event_id for c in window.contacts)[-50:]
            output.findings.append(
                Finding(
                    antigen=antigen,
                    category=category,
                    severity=_severity(category, count / threshold),
                    confidence=confidence,
                    reason=reason,
                    at=now,
                    event_ids=evidence_ids,
                    cell_id=self.cell_id,
                    cell_type=self.cell_type,
                    host_id=host_id,
                )
            )
            output.cytokines.append(
                Cytokine.emit(
                    "il8",
                    self.cell_id,
                    antigen.type,
                    antigen.value,
                    now,
                    {"category": category, "count": count, "threshold": threshold},
                )
            )

        if output.signals:
            return output
        if ratio >= p.danger_ratio:
            output.signals.append(
                Signal(
                    antigen,
                    "danger",
                    min(1.0, ratio),
                    self.cell_id,
                    f"fan-out at {ratio:.0%} of the nearest burst threshold",
                    now,
                    event.event_id,
                    _leading_category(patterns),
                    host_id,
                )
            )
        elif not contact.failed and p.safe_strength > 0:
            output.signals.append(
                Signal(
                    antigen,
                    "safe",
                    p.safe_strength,
                    self.cell_id,
                    "ordinary completed connection",
                    now,
                    event.event_id,
                    None,
                    host_id,
                )
            )
        return output


def _widest(table: dict[K, Counter[V]]) -> tuple[str, int]:
    """The key with the most distinct inner values, as text, and that count."""
    best_key = "-"
    best = 0
    for key, counts in table.items():
        if len(counts) > best:
            best_key, best = str(key), len(counts)
    return best_key, best


def _leading_category(patterns: list[tuple[ThreatCategory, int, int]]) -> ThreatCategory:
    return max(patterns, key=lambda pattern: pattern[1] / pattern[2])[0]


def _target_text(target: tuple[str, int] | None) -> str:
    if target is None:
        return "(none)"
    host, port = target
    return host if port == 0 else f"{host}:{port}"


def _severity(category: ThreatCategory, ratio: float) -> ThreatSeverity:
    base: dict[ThreatCategory, ThreatSeverity] = {"brute_force": "high"}
    severity = base.get(category, "medium")
    if ratio >= 5 and severity == "medium":
        return "high"
    return severity
