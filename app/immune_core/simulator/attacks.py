"""Attack overlays: each returns the labelled events of one attack against the simulated network.

Every attack names the antigen the detection layer should blame (``LabelledEvent.antigen``) and its
expected category is in ``EXPECTED_DETECTIONS``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from immune_core.simulator.network import Network, attacker_ip, public_ip
from immune_core.simulator.records import EventFactory, LabelledEvent


@dataclass(frozen=True, slots=True)
class ExpectedDetection:
    category: str
    antigen_type: str
    also: tuple[str, ...] = ()  # other categories that name the attack correctly

    @property
    def categories(self) -> tuple[str, ...]:
        return (self.category, *self.also)


EXPECTED_DETECTIONS: dict[str, ExpectedDetection] = {
    "port_scan": ExpectedDetection("port_scan", "source_ip"),
    "slow_scan": ExpectedDetection("port_scan", "source_ip"),
    "brute_force": ExpectedDetection("brute_force", "source_ip"),
    "exfiltration": ExpectedDetection("exfiltration", "host"),
    "beaconing": ExpectedDetection("beaconing", "host"),
    "known_bad_ip": ExpectedDetection("known_bad_indicator", "source_ip"),
    "unsigned_process": ExpectedDetection("unsigned_process", "process"),
    # Variants real attackers use to stay under the innate layer's thresholds (the adaptive layer's job):
    "spread_scan": ExpectedDetection("network_sweep", "source_ip", also=("port_scan",)),
    "chunked_exfiltration": ExpectedDetection("exfiltration", "host"),
    "dns_beaconing": ExpectedDetection("beaconing", "host"),
    "script_dropper": ExpectedDetection("unsigned_process", "process"),
}

Attack = Callable[[random.Random, EventFactory, Network, datetime], list[LabelledEvent]]


def port_scan(rng: random.Random, make: EventFactory, net: Network, start: datetime) -> list[LabelledEvent]:
    """An external scanner probes 200 ports of the web server in about 40 s (SYN scan: mostly refused)."""
    scanner = attacker_ip(rng)
    target = net.servers["web"]
    ports = rng.sample(range(1, 10_000), 200)
    events = []
    at = start
    for port in ports:
        at += timedelta(seconds=rng.uniform(0.05, 0.35))
        state = "established" if port in (80, 443, 22) else rng.choice(["rejected", "rejected", "timeout"])
        flow = make.flow(
            at,
            target.host_id,
            scanner,
            target.ip,
            port,
            rng.randint(40, 80),
            0 if state != "established" else 60,
            conn_state=state,
        )
        events.append(LabelledEvent(flow, "port_scan", f"source_ip:{scanner}"))
    return events


def slow_scan(rng: random.Random, make: EventFactory, net: Network, start: datetime) -> list[LabelledEvent]:
    """A patient scanner: one random port of the database server every ~5 s for 7.5 minutes.

    About 12 new ports a minute stays under the neutrophil's burst threshold (20 in 60 s) the whole
    time; it is the dendritic cells, accumulating the neutrophil's danger signals, that catch it.
    """
    scanner = attacker_ip(rng)
    target = net.servers["db"]
    events = []
    at = start
    for port in rng.sample(range(1, 65_536), 90):
        at += timedelta(seconds=rng.uniform(4.0, 6.0))
        flow = make.flow(
            at,
            target.host_id,
            scanner,
            target.ip,
            port,
            rng.randint(40, 80),
            0,
            conn_state=rng.choice(["rejected", "rejected", "timeout"]),
        )
        events.append(LabelledEvent(flow, "slow_scan", f"source_ip:{scanner}"))
    return events


def brute_force(rng: random.Random, make: EventFactory, net: Network, start: datetime) -> list[LabelledEvent]:
    """Password guessing against the bastion's SSH: 60 short sessions in 3 minutes, each a failed login."""
    attacker = attacker_ip(rng)
    bastion = net.servers["bastion"]
    events = []
    at = start
    for _ in range(60):
        at += timedelta(seconds=rng.uniform(1.0, 5.0))
        state = rng.choice(["established", "established", "reset"])
        flow = make.flow(
            at,
            bastion.host_id,
            attacker,
            bastion.ip,
            22,
            rng.randint(1_500, 3_500),
            rng.randint(1_800, 3_000),
            conn_state=state,
        )
        events.append(LabelledEvent(flow, "brute_force", f"source_ip:{attacker}"))
        login = make.endpoint(
            at + timedelta(milliseconds=300),
            bastion.host_id,
            "sshd",
            "sshd",
            "root",
            "login_failed",
            signed=True,
            remote_ip=attacker,
        )
        events.append(LabelledEvent(login, "brute_force", f"source_ip:{attacker}"))
    return events


def exfiltration(
    rng: random.Random, make: EventFactory, net: Network, start: datetime
) -> list[LabelledEvent]:
    """A compromised workstation uploads ~150 MB to one external host in 4 minutes, in 25 chunks."""
    return _upload(rng, make, net, start, "exfiltration", 25, (4.0, 14.0), (4_000_000, 8_000_000))


def beaconing(rng: random.Random, make: EventFactory, net: Network, start: datetime) -> list[LabelledEvent]:
    """Implant on a workstation calls home every 30 s (+-0.8 s jitter) for 12 minutes, a few hundred bytes."""
    victim = rng.choice(net.workstations)
    c2 = public_ip(rng, ("194.165", "77.91", "31.184"))
    period = 30.0
    events = []
    for beat in range(24):
        at = start + timedelta(seconds=beat * period + rng.uniform(-0.8, 0.8))
        flow = make.flow(
            at, victim.host_id, victim.ip, c2, 8443, rng.randint(250, 600), rng.randint(100, 900)
        )
        events.append(LabelledEvent(flow, "beaconing", f"host:{victim.host_id}"))
    return events


def known_bad_ip(
    rng: random.Random, make: EventFactory, net: Network, start: datetime
) -> list[LabelledEvent]:
    """Intel names an address; later that address sends a handful of requests to the web server."""
    bad = attacker_ip(rng)
    web = net.servers["web"]
    intel_at = start - timedelta(minutes=5)
    events = [
        LabelledEvent(
            make.intel(intel_at, bad, "ip", "high", "partner-cert", timedelta(days=2), "botnet controller"),
            "known_bad_ip",
            f"source_ip:{bad}",
        )
    ]
    at = start
    for _ in range(5):
        at += timedelta(seconds=rng.uniform(5, 40))
        flow = make.flow(at, web.host_id, bad, web.ip, 443, rng.randint(400, 1_500), rng.randint(500, 20_000))
        events.append(LabelledEvent(flow, "known_bad_ip", f"source_ip:{bad}"))
    return events


def unsigned_process(
    rng: random.Random, make: EventFactory, net: Network, start: datetime
) -> list[LabelledEvent]:
    """A dropped, unsigned binary runs on the database server (whose processes are all signed)."""
    server = net.servers["db"]
    events = []
    at = start
    digest = make.sha256()
    for _ in range(3):
        at += timedelta(seconds=rng.uniform(20, 60))
        event = make.endpoint(
            at,
            server.host_id,
            "kworkerd",
            "bash",
            server.user,
            "process_start",
            signed=False,
            sha256=digest,
            # A simulated attacker path written into event data; nothing is ever created there.
            command_line="/tmp/.cache/kworkerd -c /tmp/.cache/k.conf",  # noqa: S108  # nosec B108
        )
        events.append(LabelledEvent(event, "unsigned_process", f"process:{server.host_id}/kworkerd"))
    return events


def spread_scan(rng: random.Random, make: EventFactory, net: Network, start: datetime) -> list[LabelledEvent]:
    """One scanner probes random ports of random addresses of the workstations' /24, one every 6-10 s.

    About 110 probes over 15 minutes: no address gets more than a few ports and no port more than a few
    addresses, so neither the neutrophil's vertical (ports per host) nor horizontal (hosts per port)
    count comes near its threshold, and the failures in a minute stay under its danger ratio.
    """
    scanner = attacker_ip(rng)
    prefix = net.workstations[0].ip.rsplit(".", 1)[0]
    by_ip = {host.ip: host for host in net.hosts}
    events = []
    at = start
    while at < start + timedelta(minutes=15):
        at += timedelta(seconds=rng.uniform(6.0, 10.0))
        address = f"{prefix}.{rng.randint(1, 254)}"
        host = by_ip.get(address)
        # Probes of live hosts are refused; probes of unused addresses time out at the network sensor.
        sensor = host.host_id if host is not None else "netsensor-1"
        state = "rejected" if host is not None else "timeout"
        flow = make.flow(
            at, sensor, scanner, address, rng.randint(1, 65_535), rng.randint(40, 80), 0, conn_state=state
        )
        events.append(LabelledEvent(flow, "spread_scan", f"source_ip:{scanner}"))
    return events


def chunked_exfiltration(
    rng: random.Random, make: EventFactory, net: Network, start: datetime
) -> list[LabelledEvent]:
    """A workstation uploads ~150 MB to one external host in 60 chunks of 1.5-3.5 MB over about an hour.

    One chunk a minute keeps every five-minute window below the NK cell's 20 MB floor.
    """
    return _upload(rng, make, net, start, "chunked_exfiltration", 60, (50.0, 70.0), (1_500_000, 3_500_000))


def _upload(
    rng: random.Random,
    make: EventFactory,
    net: Network,
    start: datetime,
    label: str,
    chunks: int,
    gap_s: tuple[float, float],
    chunk_bytes: tuple[int, int],
) -> list[LabelledEvent]:
    """A random workstation sends `chunks` HTTPS uploads to one external host: each `gap_s` seconds after
    the last (uniform), each of `chunk_bytes` bytes (uniform), answered with 2-9 kB."""
    victim = rng.choice(net.workstations)
    drop = public_ip(rng, ("198.18", "146.70", "89.248"))
    events = []
    at = start
    for _ in range(chunks):
        at += timedelta(seconds=rng.uniform(*gap_s))
        flow = make.flow(
            at, victim.host_id, victim.ip, drop, 443, rng.randint(*chunk_bytes), rng.randint(2_000, 9_000)
        )
        events.append(LabelledEvent(flow, label, f"host:{victim.host_id}"))
    return events


def dns_beaconing(
    rng: random.Random, make: EventFactory, net: Network, start: datetime
) -> list[LabelledEvent]:
    """An implant calls home over DNS: a query for a fresh name under its domain every 40 s (+-1 s).

    The queries go to the organisation's own resolver on port 53 -- an internal destination on a port the
    NK cell's beacon tracker ignores (scrapes, health checks and name lookups are periodic by design).
    """
    victim = rng.choice(net.workstations)
    resolver = net.servers["dns"]
    c2_domain = f"{rng.choice(['cdn-sync', 'telemetry-edge', 'static-assets'])}{rng.randint(10, 99)}.net"
    events = []
    for beat in range(20):
        at = start + timedelta(seconds=beat * 40.0 + rng.uniform(-1.0, 1.0))
        name = f"{rng.getrandbits(40):010x}.{c2_domain}"
        flow = make.flow(
            at,
            victim.host_id,
            victim.ip,
            resolver.ip,
            53,
            rng.randint(60, 110),
            rng.randint(100, 300),
            protocol="udp",
            domain=name,
        )
        events.append(LabelledEvent(flow, "dns_beaconing", f"host:{victim.host_id}"))
    return events


def script_dropper(
    rng: random.Random, make: EventFactory, net: Network, start: datetime
) -> list[LabelledEvent]:
    """A macro starts PowerShell, which starts an unsigned binary it dropped in the user's temp folder.

    On a workstation, where some unsigned software is normal and new programs appear every day, the NK
    cell's "unsigned on a host that has none" and "new on a stable host" rules cannot fire.
    """
    victim = rng.choice(net.workstations)
    binary = rng.choice(["onedrive-sync.exe", "updater64.exe", "msedge-helper.exe"])
    path = f"C:\\Users\\{victim.user}\\AppData\\Local\\Temp\\{binary}"
    antigen = f"process:{victim.host_id}/{binary}"
    events = []
    at = start
    for _ in range(2):
        at += timedelta(seconds=rng.uniform(20, 90))
        shell = make.endpoint(
            at,
            victim.host_id,
            "powershell.exe",
            "winword.exe",
            victim.user,
            "process_start",
            signed=True,
            command_line="powershell.exe -nop -w hidden -enc SQBFAFgA",
        )
        # The shell itself is signed and common on workstations: only the dropped binary is the attack.
        events.append(LabelledEvent(shell))
        dropped = make.endpoint(
            at + timedelta(seconds=rng.uniform(2, 8)),
            victim.host_id,
            binary,
            "powershell.exe",
            victim.user,
            "process_start",
            signed=False,
            sha256=make.sha256(),
            command_line=path,
        )
        events.append(LabelledEvent(dropped, "script_dropper", antigen))
    return events


ATTACKS: dict[str, Attack] = {
    "port_scan": port_scan,
    "slow_scan": slow_scan,
    "brute_force": brute_force,
    "exfiltration": exfiltration,
    "beaconing": beaconing,
    "known_bad_ip": known_bad_ip,
    "unsigned_process": unsigned_process,
    "spread_scan": spread_scan,
    "chunked_exfiltration": chunked_exfiltration,
    "dns_beaconing": dns_beaconing,
    "script_dropper": script_dropper,
}
# ``mixed`` staggers the attacks the innate layer is held to; the variants above are scored on their own.
MIXED_ATTACKS: tuple[str, ...] = (
    "port_scan",
    "slow_scan",
    "brute_force",
    "exfiltration",
    "beaconing",
    "known_bad_ip",
    "unsigned_process",
)
