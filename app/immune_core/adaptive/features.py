"""Antigen feature vectors: what an antigen has been doing over a long window, as a point in [0, 1]^d.

The innate cells judge short windows (a minute of fan-out, five minutes of upstream bytes). The adaptive
layer judges *antigens* by their behaviour over a long window (``window_s``, default one hour of event
time), summarised as a fixed-length vector per antigen type, each component scaled to [0, 1] so that
Euclidean distance (the B cells' affinity, the regulatory T cells' self radius) weighs them alike:

``source_ip`` (what an address does as the sender of flows)
  0 ``targets``   distinct (destination, port) pairs, log1p(n) / log1p(512), capped at 1
  1 ``novelty``   distinct targets / flows (1: every flow goes somewhere new, the shape of a scan)
  2 ``failed``    share of flows that failed (rejected, reset, attempted, timeout)
  3 ``probes``    share of flows carrying at most 100 bytes upstream (probe-sized)
  4 ``auth``      share of flows to authentication ports
  5 ``volume``    log1p(flows) / log1p(1000)

``host`` -- two spaces, so that a host's uploads and its periodic contacts are judged apart (one
vector mixing both made a beacon's memory depend on what its victim happened to browse):

  ``upload`` (flows whose source address is internal and destination external)
    0 ``upload``    the most bytes sent to one external destination, log1p(b) / log1p(1e9)
    1 ``one_way``   of that destination's traffic, the share that went up (bytes_out / (in + out))
    2 ``chunks``    flows of >= 1 MB to that destination, log1p(n) / log1p(100)

  ``channel`` (contacts to external address:port, and DNS names resolved, keyed by parent domain)
    0 ``regular``   the most regular channel: max(0, 1 - CV / 0.5) of its intervals, over channels with
                    >= 8 contacts whose mean interval is within [5 s, 3600 s] and whose median upstream
                    size is at most 20 kB (a beacon's shape); 0 when there is none
    1 ``quiet``     that channel's median upstream size: 1 - log1p(median) / log1p(1e5), at least 0
    2 ``contacts``  that channel's contacts kept (at most 12), / 12

``process`` (one process start, ``host/process``; the host's learned parents and processes give context)
  0 ``unsigned``  the binary is not signed
  1 ``scripted``  its parent is a script or command interpreter (``SCRIPT_HOSTS``)
  2 ``odd_parent`` the parent started none of the host's processes before
  3 ``new``       first sighting of this process on the host
  4 ``writable``  the command line runs from a user-writable or temporary directory

Every table is bounded (least recently active keys evicted first) and a profile idle for ``window_s``
starts over, so memory stays flat under address floods and a profile never mixes two unrelated hours.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from immune_core.cells.observation import Antigen
from immune_core.events.models import EndpointEvent, IntelItem, NetworkFlow

SOURCE_FEATURES: tuple[str, ...] = ("targets", "novelty", "failed", "probes", "auth", "volume")
UPLOAD_FEATURES: tuple[str, ...] = ("upload", "one_way", "chunks")
CHANNEL_FEATURES: tuple[str, ...] = ("regular", "quiet", "contacts")
PROCESS_FEATURES: tuple[str, ...] = ("unsigned", "scripted", "odd_parent", "new", "writable")
# Feature space -> component names; memory detectors and self samples live in one space each.
FEATURES_BY_SPACE: dict[str, tuple[str, ...]] = {
    "source_ip": SOURCE_FEATURES,
    "upload": UPLOAD_FEATURES,
    "channel": CHANNEL_FEATURES,
    "process": PROCESS_FEATURES,
}
SPACE_ANTIGEN_TYPE: dict[str, str] = {
    "source_ip": "source_ip",
    "upload": "host",
    "channel": "host",
    "process": "process",
}
SCRIPT_HOSTS = frozenset(
    {
        "powershell.exe",
        "pwsh.exe",
        "pwsh",
        "wscript.exe",
        "cscript.exe",
        "mshta.exe",
        "cmd.exe",
        "rundll32.exe",
        "regsvr32.exe",
        "python.exe",
        "python",
        "python3",
        "perl",
        "bash",
        "sh",
        "dash",
        "zsh",
    }
)
_FAILED = frozenset({"rejected", "reset", "attempted", "timeout"})
_AUTH_PORTS = frozenset({21, 22, 23, 110, 143, 389, 445, 1433, 3306, 3389, 5432, 5900, 5985, 5986})
_WRITABLE = re.compile(
    r"(?i)(/tmp/|/var/tmp/|/dev/shm/|\\temp\\|\\appdata\\|\\downloads\\|\\users\\public\\)"
)
_TARGET_CAP = 512
_CHANNEL_HISTORY = 12
_CHANNEL_MIN = 8
_CV_SCALE = 0.5  # a CV of 0.5 or more is no regularity at all (a Poisson process has CV 1)
_MIN_PERIOD_S, _MAX_PERIOD_S = 5.0, 3600.0
_BEACON_MAX_BYTES = 20_000  # median upstream size of a beacon (the NK cell's default too)


# An organisation's own address space: RFC 1918, shared (RFC 6598), loopback, link-local, IPv6 ULA.
# Not "not global": the documentation and benchmarking ranges are not anybody's internal network.
_INTERNAL_NETS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


@lru_cache(maxsize=65_536)
def is_internal(address: str) -> bool:
    """True for an address of the organisation's own space (``_INTERNAL_NETS``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _INTERNAL_NETS if net.version == ip.version)


def parent_domain(name: str) -> str:
    """The last two labels (``a1b2.c2.example.net`` -> ``example.net``): where names of one operator meet."""
    labels = name.rstrip(".").split(".")
    return ".".join(labels[-2:])


def _scaled_log(value: float, ceiling: float) -> float:
    return min(1.0, math.log1p(max(0.0, value)) / math.log1p(ceiling))


@dataclass(slots=True)
class SourceProfile:
    started: datetime
    last: datetime
    flows: int = 0
    failed: int = 0
    probes: int = 0
    auth: int = 0
    targets: set[tuple[str, int]] = field(default_factory=set)
    target_count: int = 0  # saturates once the set is full (the feature is capped there anyway)

    def add(self, flow: NetworkFlow) -> None:
        self.flows += 1
        self.failed += flow.conn_state in _FAILED
        self.probes += flow.bytes_out <= 100
        self.auth += flow.dst_port in _AUTH_PORTS
        key = (flow.dst_ip, flow.dst_port)
        if key not in self.targets and len(self.targets) < _TARGET_CAP:
            self.targets.add(key)
        self.target_count = len(self.targets)
        self.last = flow.timestamp

    def vector(self) -> tuple[float, ...]:
        n = self.flows
        return (
            _scaled_log(self.target_count, _TARGET_CAP),
            min(1.0, self.target_count / n),
            self.failed / n,
            self.probes / n,
            self.auth / n,
            _scaled_log(n, 1000),
        )


@dataclass(slots=True)
class _Channel:
    times: deque[datetime] = field(default_factory=lambda: deque(maxlen=_CHANNEL_HISTORY))
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=_CHANNEL_HISTORY))

    def regularity(self) -> float:
        """1 - CV of the intervals for a channel of small, periodic contacts (a beacon's shape), else 0."""
        if len(self.times) < _CHANNEL_MIN:
            return 0.0
        if sorted(self.sizes)[len(self.sizes) // 2] > _BEACON_MAX_BYTES:
            return 0.0  # periodic bulk transfers (backups, chunked uploads) are not beacons
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(self.times)]
        mean = sum(gaps) / len(gaps)
        if not _MIN_PERIOD_S <= mean <= _MAX_PERIOD_S:
            return 0.0
        std = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
        return max(0.0, 1.0 - std / mean / _CV_SCALE)


@dataclass(slots=True)
class _Destination:
    up: int = 0
    down: int = 0
    chunks: int = 0


@dataclass(slots=True)
class HostProfile:
    started: datetime
    last: datetime
    observations: int = 0
    destinations: OrderedDict[str, _Destination] = field(default_factory=OrderedDict)
    channels: OrderedDict[str, _Channel] = field(default_factory=OrderedDict)
    top_upload: str | None = None
    regular_channel: str | None = None
    _regular: float = 0.0

    def add_upload(self, flow: NetworkFlow, max_keys: int) -> None:
        self.observations += 1
        self.last = flow.timestamp
        dest = self.destinations.get(flow.dst_ip)
        if dest is None:
            dest = self.destinations[flow.dst_ip] = _Destination()
            while len(self.destinations) > max_keys:
                evicted, _ = self.destinations.popitem(last=False)
                if evicted == self.top_upload:
                    self.top_upload = None
        else:
            self.destinations.move_to_end(flow.dst_ip)
        dest.up += flow.bytes_out
        dest.down += flow.bytes_in
        dest.chunks += flow.bytes_out >= 1_000_000
        top = self.destinations.get(self.top_upload) if self.top_upload else None
        if top is None or dest.up > top.up:
            self.top_upload = flow.dst_ip
        self.add_contact(f"{flow.dst_ip}:{flow.dst_port}", flow.timestamp, flow.bytes_out, max_keys)

    def add_contact(self, channel_key: str, at: datetime, size: int, max_keys: int) -> None:
        self.last = max(self.last, at)
        channel = self.channels.get(channel_key)
        if channel is None:
            channel = self.channels[channel_key] = _Channel()
            while len(self.channels) > max_keys:
                evicted, _ = self.channels.popitem(last=False)
                if evicted == self.regular_channel:
                    self.regular_channel, self._regular = None, 0.0
        else:
            self.channels.move_to_end(channel_key)
        if channel.times and at <= channel.times[-1]:
            return  # a duplicate or out-of-order contact says nothing about the period
        channel.times.append(at)
        channel.sizes.append(size)
        regular = channel.regularity()
        if channel_key == self.regular_channel or regular > self._regular:
            self.regular_channel, self._regular = channel_key, regular

    def upload_vector(self) -> tuple[float, ...]:
        if self.top_upload is None or (dest := self.destinations.get(self.top_upload)) is None:
            return (0.0, 0.0, 0.0)
        total = dest.up + dest.down
        return (_scaled_log(dest.up, 1e9), dest.up / total if total else 0.0, _scaled_log(dest.chunks, 100))

    def channel_vector(self) -> tuple[float, ...]:
        if self.regular_channel is None or self._regular <= 0:
            return (0.0, 0.0, 0.0)
        channel = self.channels[self.regular_channel]
        sizes = sorted(channel.sizes)
        quiet = 1.0 - _scaled_log(sizes[len(sizes) // 2], 1e5)
        return (self._regular, quiet, len(channel.times) / _CHANNEL_HISTORY)


@dataclass(slots=True)
class _HostProcesses:
    processes: set[str] = field(default_factory=set)
    parents: set[str] = field(default_factory=set)
    starts: int = 0


@dataclass(frozen=True, slots=True)
class Observation:
    """An antigen touched by one event: its vector in one feature space and the evidence behind it."""

    antigen: Antigen
    space: str
    vector: tuple[float, ...]
    observations: int
    host_id: str | None


class AntigenProfiles:
    """Per-antigen long-window profiles for one engine; ``observe(event)`` returns the touched antigens.

    Costs O(1) amortised per event (the channel regularity is over at most 12 contacts).
    """

    def __init__(
        self, window_s: float = 3600.0, max_antigens: int = 50_000, max_keys_per_host: int = 256
    ) -> None:
        self.window_s = window_s
        self.max_antigens = max_antigens
        self.max_keys_per_host = max_keys_per_host
        self.sources: OrderedDict[str, SourceProfile] = OrderedDict()
        self.hosts: OrderedDict[str, HostProfile] = OrderedDict()
        self.host_processes: OrderedDict[str, _HostProcesses] = OrderedDict()

    def __len__(self) -> int:
        return len(self.sources) + len(self.hosts)

    def observe(self, event: NetworkFlow | EndpointEvent | IntelItem) -> list[Observation]:
        if isinstance(event, NetworkFlow):
            return self._flow(event)
        if isinstance(event, EndpointEvent):
            return self._endpoint(event)
        return []

    def _fresh(self, started: datetime, last: datetime, now: datetime) -> bool:
        return (now - last).total_seconds() <= self.window_s and (
            now - started
        ).total_seconds() <= 2 * self.window_s

    def _flow(self, flow: NetworkFlow) -> list[Observation]:
        now = flow.timestamp
        source = self.sources.get(flow.src_ip)
        if source is None or not self._fresh(source.started, source.last, now):
            source = SourceProfile(now, now)
            self.sources[flow.src_ip] = source
            while len(self.sources) > self.max_antigens:
                self.sources.popitem(last=False)
        self.sources.move_to_end(flow.src_ip)
        source.add(flow)
        touched = [
            Observation(
                Antigen("source_ip", flow.src_ip), "source_ip", source.vector(), source.flows, flow.host_id
            )
        ]
        if is_internal(flow.src_ip):
            host = self._host(flow.host_id, now)
            antigen = Antigen("host", flow.host_id)
            if flow.dst_port == 53 and flow.domain:
                host.observations += 1
                host.add_contact(
                    f"dns:{parent_domain(flow.domain)}", now, flow.bytes_out, self.max_keys_per_host
                )
            elif not is_internal(flow.dst_ip):
                host.add_upload(flow, self.max_keys_per_host)
                touched.append(
                    Observation(antigen, "upload", host.upload_vector(), host.observations, flow.host_id)
                )
            else:
                return touched
            touched.append(
                Observation(antigen, "channel", host.channel_vector(), host.observations, flow.host_id)
            )
        return touched

    def _host(self, host_id: str, now: datetime) -> HostProfile:
        host = self.hosts.get(host_id)
        if host is None or not self._fresh(host.started, host.last, now):
            host = HostProfile(now, now)
            self.hosts[host_id] = host
            while len(self.hosts) > self.max_antigens:
                self.hosts.popitem(last=False)
        self.hosts.move_to_end(host_id)
        return host

    def _endpoint(self, event: EndpointEvent) -> list[Observation]:
        if event.action == "dns_query" and event.domain:
            host = self._host(event.host_id, event.timestamp)
            host.observations += 1
            host.add_contact(f"dns:{parent_domain(event.domain)}", event.timestamp, 0, self.max_keys_per_host)
            antigen = Antigen("host", event.host_id)
            return [Observation(antigen, "channel", host.channel_vector(), host.observations, event.host_id)]
        if event.action != "process_start":
            return []
        learned = self.host_processes.get(event.host_id)
        if learned is None:
            learned = self.host_processes[event.host_id] = _HostProcesses()
            while len(self.host_processes) > self.max_antigens:
                self.host_processes.popitem(last=False)
        else:
            self.host_processes.move_to_end(event.host_id)
        vector = (
            0.0 if event.signed else 1.0,
            1.0 if event.parent_process.lower() in SCRIPT_HOSTS else 0.0,
            0.0 if event.parent_process in learned.parents else 1.0,
            0.0 if event.process in learned.processes else 1.0,
            1.0 if event.command_line and _WRITABLE.search(event.command_line) else 0.0,
        )
        learned.starts += 1
        seen = learned.starts
        if len(learned.processes) < 4096:
            learned.processes.add(event.process)
        if len(learned.parents) < 4096:
            learned.parents.add(event.parent_process)
        antigen = Antigen("process", f"{event.host_id}/{event.process}")
        # The evidence behind a process vector is how well the host is known, not the process itself.
        return [Observation(antigen, "process", vector, seen, event.host_id)]
