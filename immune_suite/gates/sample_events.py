"""Valid input events for load and chaos traffic.

The service's own simulator (`immune_core.simulator.generate`) is preferred, so load looks like the
traffic the service is tuned for; when it is not importable (a gate pointed at a remote service from a
checkout without the app), events are built here from the published event schema: mostly benign
network flows and endpoint activity with the occasional port scan, the mix the simulator's baseline
scenario produces.
"""

from __future__ import annotations

import importlib
import random
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

_PROCESSES = ("nginx", "sshd", "python3", "postgres", "java", "chrome", "systemd")
_USERS = ("alice", "bob", "svc-web", "svc-batch", "root")
_PORTS = (22, 53, 80, 443, 5432, 6379, 8080, 9092)


@lru_cache(maxsize=1)
def _simulator_pool() -> tuple[dict[str, Any], ...]:
    """Benign events from the service's simulator (empty when it is not importable)."""
    try:
        simulator = importlib.import_module("immune_core.simulator")
        labelled = simulator.generate("benign", seed=random.randrange(2**31))  # noqa: S311 - traffic
    except (ImportError, AttributeError, TypeError, ValueError):
        return ()
    # Intel items carry an expiry tied to their timestamp; re-timing them would need both moved.
    return tuple(e.event for e in labelled if e.event.get("kind") != "intel")


def _from_simulator(pool: tuple[dict[str, Any], ...], count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Simulator events re-stamped as new: a fresh id (no de-duplication) and the current time."""
    now = _now()
    return [
        {
            **rng.choice(pool),
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "timestamp": now,
        }
        for _ in range(count)
    ]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def network_flow(rng: random.Random, host: int | None = None, scan: bool = False) -> dict[str, Any]:
    """One `network_flow` event (the API's event JSON) from host number `host` (random in 1..39 if None):
    an ordinary flow, or with `scan` one rejected probe of a low port on a public address. Sizes are in
    bytes and packets, `duration_ms` in milliseconds."""
    host_n = host if host is not None else rng.randrange(1, 40)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": _now(),
        "kind": "network_flow",
        "host_id": f"host-{host_n:03d}",
        "src_ip": f"10.0.{host_n // 250}.{host_n % 250 + 1}",
        "dst_ip": f"203.0.113.{rng.randrange(1, 254)}" if scan else f"10.1.0.{rng.randrange(1, 254)}",
        "src_port": rng.randrange(1024, 65535),
        "dst_port": rng.randrange(1, 1024) if scan else rng.choice(_PORTS),
        "protocol": "tcp",
        "bytes_in": 0 if scan else rng.randrange(200, 200_000),
        "bytes_out": 60 if scan else rng.randrange(200, 50_000),
        "packets": 1 if scan else rng.randrange(2, 300),
        "duration_ms": 1 if scan else rng.randrange(1, 30_000),
        "conn_state": "rejected" if scan else "established",
    }


def endpoint_event(rng: random.Random) -> dict[str, Any]:
    """One `endpoint` event (a process start, connect, file read or login on a random host) as API JSON."""
    host_n = rng.randrange(1, 40)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": _now(),
        "kind": "endpoint",
        "host_id": f"host-{host_n:03d}",
        "process": rng.choice(_PROCESSES),
        "parent_process": "systemd",
        "user": rng.choice(_USERS),
        "action": rng.choice(("process_start", "network_connect", "file_read", "login")),
        "signed": rng.random() > 0.05,
        "pid": rng.randrange(100, 60_000),
    }


def crafted(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """`count` events without the service's simulator: about 2 % port scans, 68 % ordinary flows and 30 %
    endpoint events."""
    events: list[dict[str, Any]] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.02:
            events.append(network_flow(rng, scan=True))
        elif roll < 0.7:
            events.append(network_flow(rng))
        else:
            events.append(endpoint_event(rng))
    return events


def generate(count: int, rng: random.Random | None = None) -> list[dict[str, Any]]:
    """`count` valid events as JSON-ready mappings."""
    rng = rng or random.Random()  # noqa: S311 - traffic generation, not cryptography
    pool = _simulator_pool()
    return _from_simulator(pool, count, rng) if pool else crafted(count, rng)
