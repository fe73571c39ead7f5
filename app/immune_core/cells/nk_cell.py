"""NK cell: "missing self". Learns each host's normal behaviour online and flags what departs from it.

Three behaviours per host (``host_id``), all learned from the event stream itself:

1. **Upstream volume** (exfiltration). An EWMA mean/variance (``alpha``) of log(1 + bytes_out) per flow,
   and the flows sent to each destination over the last ``exfil_window_s``. After ``warmup_flows``
   flows, a destination that received at least ``exfil_min_bytes`` in the window with a mean flow size
   whose z-score ``(log1p(mean) - ewma_mean) / max(ewma_std, min_std)`` is at least ``exfil_z`` is
   ``exfiltration`` (antigen: the host). Using the window's *mean* flow catches exfiltration chunked
   into ordinary-looking counts of flows, without flagging many ordinary flows to one busy server.
   Flows with z >= ``danger_z`` are not learned, so an attacker cannot drag the baseline up with the
   very flows being judged. The z-scores are on a log scale: with a typical workstation's spread
   (std ~2 in log units, DNS and uploads mixed in) z = 3 is a mean flow ~400 times the usual size,
   and the ``exfil_min_bytes`` floor keeps small hosts' small deviations out. z >= ``danger_z``
   (flow or window mean) below that is a danger signal; |z| < 1 a safe signal. The baseline is kept
   per (host, sending address), so flows *to* the host (a scan of a server) never shape it.
2. **Beaconing** (``periodicity.BeaconTracker``): periodic small connections to one external
   destination (private, loopback and link-local destinations are ignored when
   ``beacon_external_only``, since internal polling -- metrics scrapes, health checks -- is periodic by
   design; ports in ``beacon_ignore_ports`` such as NTP likewise).
3. **Processes** (endpoint events). The set of processes seen on the host and the share of unsigned
   ones. After ``warmup_process_events`` events:
   * a host is *stable* when no process outside its set appeared during its last
     ``stable_after_events`` process starts (servers run a fixed set of daemons; workstations keep
     gaining new software);
   * an *odd parent* is one that started none of the host's learned processes (lineage: a shell
     spawning a binary on a database server);
   * an unsigned process on a host whose unsigned share is at most ``unsigned_share_max`` (a host that
     "normally has none") is ``unsigned_process`` (antigen ``host/process``) when the host is stable
     or the parent is odd;
   * a never-seen process, on its first sighting, on a stable host and from an odd parent is
     ``unknown_process`` (a rare but legitimate daemon started by systemd is only a danger signal);
   * on a host that is not stable, unsigned or never-seen processes are only danger signals;
   * a process that keeps appearing becomes tolerated after ``tolerance_sightings`` sightings (the
     NK cell's tolerance to self); until then it is not learned into the baseline.
   Known signed processes give safe signals.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from pydantic import Field, model_validator

from immune_core.cells.base import AnyEvent, Cell, CellContext, CellParams
from immune_core.cells.baseline import Ewma, log_bytes
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen, CellOutput, Finding, Signal
from immune_core.cells.periodicity import BeaconTracker, BeaconVerdict
from immune_core.detection.threat import ThreatCategory, ThreatSeverity
from immune_core.events.models import EndpointEvent, NetworkFlow

_SWEEP_EVERY_FLOWS = 256


class NKCellParams(CellParams):
    # Upper bounds keep one cell's cost (state per host and pair, work per event) within about 4x the
    # default; thresholds are bounded where a larger value could never fire.
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_std: float = Field(default=0.5, gt=0, le=10, description="Floor of the std in log-bytes units.")
    warmup_flows: int = Field(default=30, ge=1, le=100_000)
    exfil_z: float = Field(default=3.0, gt=0, le=50)
    exfil_min_bytes: int = Field(default=20_000_000, ge=0, le=10**12)
    exfil_window_s: float = Field(default=300.0, gt=0, le=86_400)
    danger_z: float = Field(default=2.5, gt=0, le=50)
    safe_strength: float = Field(default=0.5, ge=0, le=1)
    beacon_history: int = Field(default=12, ge=4, le=64)
    beacon_min_events: int = Field(default=8, ge=4, le=64)
    beacon_min_period_s: float = Field(default=5.0, gt=0, le=86_400)
    beacon_max_period_s: float = Field(default=3600.0, gt=0, le=86_400)
    beacon_max_cv: float = Field(default=0.15, gt=0, le=10)
    beacon_max_bytes: int = Field(default=20_000, ge=0, le=1_000_000_000)
    beacon_external_only: bool = True
    beacon_ignore_ports: tuple[Annotated[int, Field(ge=0, le=65_535)], ...] = Field(
        default=(53, 123), max_length=64
    )
    warmup_process_events: int = Field(default=40, ge=1, le=100_000)
    unsigned_share_max: float = Field(default=0.01, ge=0, le=1)
    stable_after_events: int = Field(default=60, ge=1, le=100_000)
    tolerance_sightings: int = Field(default=20, ge=1, le=100_000)
    max_hosts: int = Field(default=50_000, ge=1, le=200_000)
    max_candidates_per_host: int = Field(default=256, ge=1, le=1_024)

    @model_validator(mode="after")
    def _danger_below_verdict(self) -> NKCellParams:
        if self.danger_z > self.exfil_z:
            raise ValueError("danger_z must be <= exfil_z (danger is the early warning of a verdict)")
        if self.beacon_min_events > self.beacon_history:
            raise ValueError("beacon_min_events must be <= beacon_history (only that many are kept)")
        if self.beacon_min_period_s > self.beacon_max_period_s:
            raise ValueError("beacon_min_period_s must be <= beacon_max_period_s")
        return self

    max_beacon_pairs: int = Field(default=200_000, ge=1, le=800_000)


class _SendWindow:
    """The flows one host sent to one destination within the window, with their byte total kept as
    flows enter and leave: the total is O(1) per flow instead of a sum over the window, which at a
    steady few hundred flows/s to one destination made this cell the hottest code on the event loop
    (docs/performance.md). Integers: the running total is exact."""

    __slots__ = ("flows", "total")

    def __init__(self) -> None:
        self.flows: deque[tuple[datetime, int, UUID]] = deque()
        self.total = 0

    def __len__(self) -> int:
        return len(self.flows)

    def append(self, at: datetime, size: int, event_id: UUID) -> None:
        self.flows.append((at, size, event_id))
        self.total += size

    def evict_before(self, horizon: datetime) -> None:
        flows = self.flows
        while flows and flows[0][0] < horizon:
            self.total -= flows.popleft()[1]


@dataclass(slots=True)
class _HostProfile:
    volume: Ewma
    sent_to: dict[str, _SendWindow] = field(default_factory=dict)
    processes: Counter[str] = field(default_factory=Counter)
    parents: Counter[str] = field(default_factory=Counter)  # parents of learned (self) processes
    flows_since_sweep: int = 0
    candidates: Counter[str] = field(default_factory=Counter)  # seen but not (yet) tolerated
    process_events: int = 0
    unsigned_events: int = 0
    events_since_new_process: int = 0

    def unsigned_share(self) -> float:
        return self.unsigned_events / self.process_events if self.process_events else 0.0


@functools.lru_cache(maxsize=65_536)
def _is_internal(address: str) -> bool:
    # Cached: parsing the address was 4-6 % of the engine's time (docs/performance.md), and a network
    # has far fewer destinations than flows; the bound keeps a scan of the whole Internet in memory.
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast


class NKCell(Cell[NKCellParams]):
    cell_type = "nk_cell"
    params_model = NKCellParams
    description = "Per-host baselines: exfiltration volume, beaconing, unsigned or unknown processes."

    def __init__(self, params: NKCellParams, cell_id: str) -> None:
        super().__init__(params, cell_id)
        # Keyed by host, plus the sending address for flows: a host's upstream baseline must learn only
        # what the host itself sends, not what others send to it (a scan of a server would otherwise
        # teach the server's baseline that 60-byte flows are normal).
        self._hosts: OrderedDict[tuple[str, str], _HostProfile] = OrderedDict()
        self._beacons = BeaconTracker(
            history=params.beacon_history,
            min_events=params.beacon_min_events,
            min_period_s=params.beacon_min_period_s,
            max_period_s=params.beacon_max_period_s,
            max_cv=params.beacon_max_cv,
            max_bytes=params.beacon_max_bytes,
            max_pairs=params.max_beacon_pairs,
        )
        self._beacon_ignore_ports = frozenset(params.beacon_ignore_ports)
        self._exfil_window = timedelta(seconds=params.exfil_window_s)

    def state_summary(self) -> dict[str, int]:
        return {"hosts": len(self._hosts), "beacon_pairs": len(self._beacons)}

    def _profile(self, host_id: str, sender: str) -> _HostProfile:
        key = (host_id, sender)
        profile = self._hosts.get(key)
        if profile is None:
            profile = self._hosts[key] = _HostProfile(volume=Ewma(self.params.alpha))
            while len(self._hosts) > self.params.max_hosts:
                self._hosts.popitem(last=False)
        else:
            self._hosts.move_to_end(key)
        return profile

    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        output = CellOutput()
        if isinstance(event, NetworkFlow):
            profile = self._profile(event.host_id, event.src_ip)
            self._judge_volume(event, profile, context.now, output)
            self._judge_beacon(event, output)
        elif isinstance(event, EndpointEvent) and event.action == "process_start":
            self._judge_process(event, self._profile(event.host_id, "processes"), context.now, output)
        return output

    # -- 1. upstream volume -----------------------------------------------------------------------
    def _judge_volume(self, flow: NetworkFlow, profile: _HostProfile, now: datetime, out: CellOutput) -> None:
        p = self.params
        horizon = now - self._exfil_window
        window = profile.sent_to.get(flow.dst_ip)
        if window is None:
            window = profile.sent_to[flow.dst_ip] = _SendWindow()
        window.evict_before(horizon)
        # Appended after eviction: a late flow (older than the window) still counts as the evidence
        # being judged now, and the window is never empty here.
        window.append(flow.timestamp, flow.bytes_out, flow.event_id)
        self._sweep_idle_destinations(profile, horizon)
        total = window.total
        # Mean flow size to this destination over the window: chunked exfiltration keeps it high, while
        # many ordinary flows to one busy server (the database) keep it at the host's usual size.
        window_mean = total / len(window)

        warmed = profile.volume.count >= p.warmup_flows
        flow_log = log_bytes(flow.bytes_out)
        flow_z = profile.volume.zscore(flow_log, p.min_std) if warmed else 0.0
        mean_z = profile.volume.zscore(log_bytes(int(window_mean)), p.min_std) if warmed else 0.0
        if not warmed or flow_z < p.danger_z:
            profile.volume.update(flow_log)
        if not warmed:
            return

        host = Antigen("host", flow.host_id)

        strongest = max(flow_z, mean_z)
        if total >= p.exfil_min_bytes and mean_z >= p.exfil_z:
            typical = int(profile_typical_bytes(profile))
            reason = (
                f"{flow.host_id} sent {total:,} bytes to {flow.dst_ip} in {len(window)} flows within "
                f"{p.exfil_window_s:g} s; mean flow z = {mean_z:.1f} against its baseline "
                f"(typical flow {typical:,} bytes)"
            )
            confidence = round(min(0.95, 0.5 + 0.05 * (mean_z - p.exfil_z + 1)), 3)
            self._find(
                out,
                host,
                "exfiltration",
                "high",
                confidence,
                reason,
                now,
                tuple(event_id for _, _, event_id in window.flows),
                flow.host_id,
                flow.event_id,
            )
        elif strongest >= p.danger_z:
            out.signals.append(
                Signal(
                    host,
                    "danger",
                    min(1.0, strongest / p.exfil_z),
                    self.cell_id,
                    f"upstream volume z = {strongest:.1f}",
                    now,
                    flow.event_id,
                    "exfiltration",
                    flow.host_id,
                )
            )
        elif abs(flow_z) < 1.0 and p.safe_strength > 0:
            out.signals.append(
                Signal(
                    host,
                    "safe",
                    p.safe_strength,
                    self.cell_id,
                    "upstream volume within baseline",
                    now,
                    flow.event_id,
                    None,
                    flow.host_id,
                )
            )

    @staticmethod
    def _sweep_idle_destinations(profile: _HostProfile, horizon: datetime) -> None:
        # Destinations a host stopped talking to are dropped every so many flows, not on every flow,
        # so the cost per flow stays constant for hosts with thousands of peers.
        profile.flows_since_sweep += 1
        if profile.flows_since_sweep < _SWEEP_EVERY_FLOWS:
            return
        profile.flows_since_sweep = 0
        for dst in list(profile.sent_to):
            sends = profile.sent_to[dst]
            sends.evict_before(horizon)
            if not sends:
                del profile.sent_to[dst]

    # -- 2. beaconing -----------------------------------------------------------------------------
    def _judge_beacon(self, flow: NetworkFlow, out: CellOutput) -> None:
        p = self.params
        if flow.dst_port in self._beacon_ignore_ports:
            return
        if p.beacon_external_only and _is_internal(flow.dst_ip):
            return
        verdict = self._beacons.observe(
            flow.host_id, flow.dst_ip, flow.dst_port, flow.timestamp, flow.bytes_out, flow.event_id
        )
        if verdict is not None:
            self._report_beacon(verdict, flow, out)

    def _report_beacon(self, verdict: BeaconVerdict, flow: NetworkFlow, out: CellOutput) -> None:
        reason = (
            f"{verdict.host_id} contacted {verdict.dst_ip}:{verdict.dst_port} {verdict.connections} times "
            f"every {verdict.period_s:.1f} s (coefficient of variation {verdict.cv:.3f})"
        )
        confidence = round(min(0.95, 0.6 + 0.3 * (1 - verdict.cv / self.params.beacon_max_cv)), 3)
        self._find(
            out,
            Antigen("host", flow.host_id),
            "beaconing",
            "high",
            confidence,
            reason,
            flow.timestamp,
            verdict.event_ids,
            flow.host_id,
            flow.event_id,
        )

    # -- 3. processes -----------------------------------------------------------------------------
    def _judge_process(
        self, event: EndpointEvent, profile: _HostProfile, now: datetime, out: CellOutput
    ) -> None:
        p = self.params
        process = Antigen("process", f"{event.host_id}/{event.process}")
        known = event.process in profile.processes
        warmed = profile.process_events >= p.warmup_process_events
        stable = profile.events_since_new_process >= p.stable_after_events
        # Lineage: a parent that never started any of this host's known processes (a shell spawning
        # a binary on a database server) is itself out of character.
        odd_parent = event.parent_process not in profile.parents
        share = profile.unsigned_share()
        first_sighting = not known and event.process not in profile.candidates
        flagged = False

        if warmed and not event.signed and share <= p.unsigned_share_max and (stable or odd_parent):
            reason = (
                f"unsigned process {event.process} (parent {event.parent_process}"
                f"{', never a parent here' if odd_parent else ''}, user {event.user}) on {event.host_id}, "
                f"where {share:.1%} of {profile.process_events} process starts were unsigned"
            )
            self._find(
                out,
                process,
                "unsigned_process",
                "high",
                0.8,
                reason,
                now,
                (event.event_id,),
                event.host_id,
                event.event_id,
            )
            flagged = True
        elif warmed and first_sighting and stable and odd_parent:
            reason = (
                f"never-seen process {event.process} started by {event.parent_process}, which had started "
                f"none of the {len(profile.processes)} known processes of {event.host_id}; its process set "
                f"had not changed for {profile.events_since_new_process} process starts"
            )
            self._find(
                out,
                process,
                "unknown_process",
                "medium",
                0.6,
                reason,
                now,
                (event.event_id,),
                event.host_id,
                event.event_id,
            )
            flagged = True
        elif warmed and (first_sighting or not event.signed):
            # A newcomer is danger on its first sighting only: repeating it until the process is
            # tolerated would let one rare-but-legitimate daemon mature the dendritic cells on its own.
            why = "never-seen" if not known else "unsigned"
            out.signals.append(
                Signal(
                    process,
                    "danger",
                    0.5,
                    self.cell_id,
                    f"{why} process {event.process}",
                    now,
                    event.event_id,
                    "behaviour_anomaly",
                    event.host_id,
                )
            )
        elif known and event.signed and p.safe_strength > 0:
            out.signals.append(
                Signal(
                    process,
                    "safe",
                    p.safe_strength,
                    self.cell_id,
                    f"known signed process {event.process}",
                    now,
                    event.event_id,
                    None,
                    event.host_id,
                )
            )
        self._learn_process(event, profile, known, flagged)

    def _learn_process(self, event: EndpointEvent, profile: _HostProfile, known: bool, flagged: bool) -> None:
        warmed = profile.process_events >= self.params.warmup_process_events
        if known:
            profile.processes[event.process] += 1
            profile.parents[event.parent_process] += 1
            profile.events_since_new_process += 1
        elif not warmed:
            profile.processes[event.process] += 1
            profile.parents[event.parent_process] += 1
            profile.events_since_new_process = 0
        else:
            # After warm-up a newcomer is learned only once it has been seen often enough to be self.
            # Its first sighting shows the host's set changing, so the host is not stable for a while;
            # later sightings of the same newcomer are not new changes.
            if event.process in profile.candidates:
                profile.events_since_new_process += 1
            else:
                profile.events_since_new_process = 0
            profile.candidates[event.process] += 1
            if profile.candidates[event.process] >= self.params.tolerance_sightings:
                profile.processes[event.process] = profile.candidates.pop(event.process)
            elif len(profile.candidates) > self.params.max_candidates_per_host:
                # Bound memory on hosts that see endless one-off names (installers): forget the rarest.
                rarest = min(profile.candidates, key=profile.candidates.__getitem__)
                del profile.candidates[rarest]
        if not flagged:
            profile.process_events += 1
            profile.unsigned_events += not event.signed

    # -- shared -----------------------------------------------------------------------------------
    def _find(
        self,
        out: CellOutput,
        antigen: Antigen,
        category: ThreatCategory,
        severity: ThreatSeverity,
        confidence: float,
        reason: str,
        now: datetime,
        event_ids: tuple[UUID, ...],
        host_id: str,
        event_id: UUID,
    ) -> None:
        out.findings.append(
            Finding(
                antigen,
                category,
                severity,
                confidence,
                reason,
                now,
                event_ids,
                self.cell_id,
                self.cell_type,
                host_id,
            )
        )
        out.signals.append(
            Signal(antigen, "danger", 1.0, self.cell_id, reason, now, event_id, category, host_id)
        )
        out.cytokines.append(
            Cytokine.emit(
                "ifn_gamma",
                self.cell_id,
                antigen.type,
                antigen.value,
                now,
                {"category": category, "reason": reason},
            )
        )


def profile_typical_bytes(profile: _HostProfile) -> float:
    """The geometric-mean flow size the baseline has learned (the EWMA works on log bytes)."""
    return math.expm1(profile.volume.mean)
