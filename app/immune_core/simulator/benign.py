"""Benign baseline traffic: what a quiet office network looks like, seeded and reproducible.

Each workstation opens connections as a Poisson process (mean gap ``flow_gap_s``): web browsing to a pool
of internet addresses (HTTPS, small requests, larger responses, log-normal sizes), DNS to the resolver,
the intranet web server, the file server (occasional uploads up to a few MB), the database (developers)
and the bastion over SSH (interactive sessions, so well above a password guess in size). A few percent of
connections fail, as they do on real networks. Workstations start processes from a broad pool, a few
unsigned, and occasionally a brand-new one. Servers start only their own signed daemons, and talk to
each other (database, backups, metrics) and rarely to the internet for updates. A threat-intel feed
publishes indicators for addresses that never appear in the traffic.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any

from immune_core.simulator.network import (
    SERVER_PROCESSES,
    SERVER_ROLE_PORTS,
    SERVER_ROLE_PROCESSES,
    WORKSTATION_PROCESSES,
    WORKSTATION_UNSIGNED,
    Host,
    Network,
    attacker_ip,
)
from immune_core.simulator.records import EventFactory, LabelledEvent


def _lognormal(rng: random.Random, median: float, sigma: float, cap: float) -> int:
    return int(min(cap, rng.lognormvariate(math.log(median), sigma)))


def _poisson_times(
    rng: random.Random, start: datetime, duration_s: float, mean_gap_s: float
) -> list[datetime]:
    times = []
    offset = rng.expovariate(1.0 / mean_gap_s)
    while offset < duration_s:
        times.append(start + timedelta(seconds=offset))
        offset += rng.expovariate(1.0 / mean_gap_s)
    return times


def _workstation_flow(
    rng: random.Random, make: EventFactory, net: Network, host: Host, at: datetime
) -> dict[str, Any]:
    roll = rng.random()
    state = "established" if rng.random() > 0.03 else rng.choice(["rejected", "reset", "timeout"])

    def to(dst_ip: str, port: int, sent: int, received: int, **extra: Any) -> dict[str, Any]:
        # Sizes are drawn by the caller, in this order: the event stays the same for the same seed.
        return make.flow(
            at, host.host_id, host.ip, dst_ip, port, sent, received, **{"conn_state": state, **extra}
        )

    if roll < 0.50:
        dst = rng.choice(net.internet[:40])
        sent, received = _lognormal(rng, 1_800, 0.8, 400_000), _lognormal(rng, 60_000, 1.2, 30_000_000)
        return to(dst, 443, sent, received, domain=net.domains[dst])
    if roll < 0.70:
        sent, received = rng.randint(60, 120), rng.randint(80, 400)
        return to(net.servers["dns"].ip, 53, sent, received, protocol="udp", conn_state="established")
    if roll < 0.82:
        sent, received = _lognormal(rng, 2_500, 0.7, 200_000), _lognormal(rng, 40_000, 1.0, 5_000_000)
        return to(net.servers["web"].ip, 443, sent, received)
    if roll < 0.92:
        upload = rng.random() < 0.1
        sent = _lognormal(rng, 400_000, 1.0, 3_000_000) if upload else _lognormal(rng, 12_000, 0.6, 100_000)
        return to(net.servers["file"].ip, 445, sent, _lognormal(rng, 80_000, 1.2, 20_000_000))
    if roll < 0.96:
        sent, received = _lognormal(rng, 9_000, 0.6, 200_000), _lognormal(rng, 50_000, 1.0, 5_000_000)
        return to(net.servers["db"].ip, 5432, sent, received)
    sent, received = _lognormal(rng, 40_000, 0.8, 2_000_000), _lognormal(rng, 120_000, 0.9, 10_000_000)
    return to(net.servers["bastion"].ip, 22, sent, received)


def _server_flow(
    rng: random.Random, make: EventFactory, net: Network, host: Host, at: datetime
) -> dict[str, Any]:
    roll = rng.random()

    def to(dst_ip: str, port: int, sent: int, received: int, **extra: Any) -> dict[str, Any]:
        return make.flow(at, host.host_id, host.ip, dst_ip, port, sent, received, **extra)

    if roll < 0.55 and host.role != "db":
        sent, received = _lognormal(rng, 3_000, 0.5, 50_000), _lognormal(rng, 20_000, 0.8, 2_000_000)
        return to(net.servers["db"].ip, 5432, sent, received)
    if roll < 0.85:
        peer = rng.choice([s for s in net.servers.values() if s is not host])
        port = SERVER_ROLE_PORTS[peer.role]
        sent, received = _lognormal(rng, 2_000, 0.6, 60_000), _lognormal(rng, 6_000, 0.8, 300_000)
        return to(peer.ip, port, sent, received, protocol="udp" if port == 53 else "tcp")
    dst = rng.choice(net.internet[40:])
    sent, received = _lognormal(rng, 1_200, 0.5, 20_000), _lognormal(rng, 300_000, 1.0, 50_000_000)
    return to(dst, 443, sent, received, domain=net.domains[dst])


def _workstation_process(rng: random.Random, make: EventFactory, host: Host, at: datetime) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.05:
        return make.endpoint(
            at,
            host.host_id,
            rng.choice(WORKSTATION_UNSIGNED),
            "explorer.exe",
            host.user,
            "process_start",
            signed=False,
        )
    if roll < 0.08:
        # Users install and try new software now and then.
        return make.endpoint(
            at,
            host.host_id,
            f"setup-{rng.randint(1, 10_000)}.exe",
            "explorer.exe",
            host.user,
            "process_start",
            signed=True,
        )
    process = rng.choice(WORKSTATION_PROCESSES)
    return make.endpoint(at, host.host_id, process, "explorer.exe", host.user, "process_start", signed=True)


def _server_process(rng: random.Random, make: EventFactory, host: Host, at: datetime) -> dict[str, Any]:
    process = rng.choice((*SERVER_PROCESSES, *SERVER_ROLE_PROCESSES[host.role]))
    parent = "systemd" if process != "logrotate" else "cron"
    return make.endpoint(at, host.host_id, process, parent, host.user, "process_start", signed=True)


def benign_traffic(
    rng: random.Random,
    make: EventFactory,
    net: Network,
    start: datetime,
    duration_s: float,
    flow_gap_s: float = 12.0,
    process_gap_s: float = 15.0,
) -> list[LabelledEvent]:
    events: list[LabelledEvent] = []
    for host in net.workstations:
        for at in _poisson_times(rng, start, duration_s, flow_gap_s):
            events.append(LabelledEvent(_workstation_flow(rng, make, net, host, at)))
        for at in _poisson_times(rng, start, duration_s, process_gap_s * 2):
            events.append(LabelledEvent(_workstation_process(rng, make, host, at)))
    for host in net.servers.values():
        for at in _poisson_times(rng, start, duration_s, flow_gap_s * 1.5):
            events.append(LabelledEvent(_server_flow(rng, make, net, host, at)))
        for at in _poisson_times(rng, start, duration_s, process_gap_s / 1.5):
            events.append(LabelledEvent(_server_process(rng, make, host, at)))
    for at in _poisson_times(rng, start, duration_s, 300.0):
        # Feed items about addresses that this network never talks to.
        events.append(
            LabelledEvent(
                make.intel(
                    at,
                    attacker_ip(rng),
                    "ip",
                    rng.choice(["medium", "high"]),
                    "abuse-feed",
                    timedelta(hours=rng.randint(1, 48)),
                )
            )
        )
    return events
