"""Scenarios: benign baseline plus zero or more attack overlays, merged in time order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from immune_core.simulator.attacks import ATTACKS, MIXED_ATTACKS
from immune_core.simulator.benign import benign_traffic
from immune_core.simulator.network import build_network
from immune_core.simulator.records import EventFactory, LabelledEvent

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DEFAULT_DURATION_S = 1800.0
# Attacks begin after the baselines have warmed up (NK cell: tens of flows and process starts per host).
ATTACK_START_FRACTION = 0.55

SCENARIOS: dict[str, str] = {
    "benign": "Benign office traffic only (the false-positive baseline).",
    "port_scan": "Benign traffic plus an external scan of 200 ports of the web server.",
    "slow_scan": "Benign traffic plus a scan of the database server too slow for burst detection.",
    "brute_force": "Benign traffic plus SSH password guessing against the bastion.",
    "exfiltration": "Benign traffic plus a workstation uploading ~150 MB to one external host.",
    "beaconing": "Benign traffic plus an implant calling home every 30 s.",
    "known_bad_ip": "Benign traffic plus requests from an address named by threat intel.",
    "unsigned_process": "Benign traffic plus an unsigned binary started on the database server.",
    "mixed": "Benign traffic plus every attack above, staggered in time.",
    "spread_scan": "Benign traffic plus a slow scan spread over many addresses of the workstations' /24.",
    "chunked_exfiltration": "Benign traffic plus ~150 MB uploaded in one-minute chunks over an hour.",
    "dns_beaconing": "Benign traffic plus an implant calling home over DNS every 40 s.",
    "script_dropper": "Benign traffic plus an unsigned binary started by PowerShell on a workstation.",
}
# Scenarios the innate layer alone is held to (tests/detection); the rest are variants that stay under
# its thresholds, which the adaptive layer is measured on (bench/detection_quality.py).
ADAPTIVE_SCENARIOS: tuple[str, ...] = (
    "spread_scan",
    "chunked_exfiltration",
    "dns_beaconing",
    "script_dropper",
)
INNATE_SCENARIOS: tuple[str, ...] = tuple(name for name in SCENARIOS if name not in ADAPTIVE_SCENARIOS)
# An hour of chunks needs a longer run: the attack starts after 55 % of it, like the others.
SCENARIO_DURATION_S: dict[str, float] = {"chunked_exfiltration": 8400.0}


def scenario_duration(scenario: str) -> float:
    """The run length ``generate`` uses for ``scenario`` by default (seconds)."""
    return SCENARIO_DURATION_S.get(scenario, DEFAULT_DURATION_S)


def generate(
    scenario: str,
    seed: int = 0,
    start: datetime | None = None,
    duration_s: float | None = None,
    workstations: int = 12,
) -> list[LabelledEvent]:
    """Labelled events of ``scenario`` in timestamp order; the same arguments give the same events.

    ``duration_s`` defaults to ``scenario_duration(scenario)`` (1800 s; 8400 s for the hour of chunks).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    if duration_s is None:
        duration_s = scenario_duration(scenario)
    if duration_s < 600:
        raise ValueError("duration_s must be at least 600 s so that baselines can warm up before attacks")
    begin = start or DEFAULT_START
    if begin.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(f"{scenario}:{seed}")  # noqa: S311 -- reproducible simulation, not secrecy
    make = EventFactory(rng)
    net = build_network(rng, workstations)
    events = benign_traffic(rng, make, net, begin, duration_s)

    attack_names = list(MIXED_ATTACKS) if scenario == "mixed" else [] if scenario == "benign" else [scenario]
    attack_window = duration_s * (1 - ATTACK_START_FRACTION) - 480  # the longest attack lasts ~8 min
    for index, name in enumerate(attack_names):
        offset = duration_s * ATTACK_START_FRACTION
        if len(attack_names) > 1:
            offset += attack_window * index / (len(attack_names) - 1)
        events.extend(ATTACKS[name](rng, make, net, begin + timedelta(seconds=offset)))

    events.sort(key=lambda labelled: (labelled.event["timestamp"], labelled.event["event_id"]))
    return events
