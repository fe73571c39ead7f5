"""Valid input events for load and chaos traffic.

The service's own simulator (`immune_core.simulator.generate`) is preferred, so load looks like the
traffic the service is tuned for; when it is not importable (a gate pointed at a remote service from a
checkout without the app), events are built here from the published event schema: mostly benign
network flows and endpoint activity with the occasional port scan, the mix the simulator's baseline
scenario produces.
"""

from __future__ import annotations

import importlib
import inspect
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_PROCESSES = ("nginx", "sshd", "python3", "postgres", "java", "chrome", "systemd")
_USERS = ("alice", "bob", "svc-web", "svc-batch", "root")
_PORTS = (22, 53, 80, 443, 5432, 6379, 8080, 9092)


def _simulator() -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("immune_core.simulator")
    except ImportError:
        return None
    generate = getattr(module, "generate", None)
    return generate if callable(generate) else None


def _from_simulator(generate: Callable[..., Any], count: int,
                    rng: random.Random) -> list[dict[str, Any]] | None:
    """Call the simulator with whatever of (count, rng/seed) it accepts; None when it does not fit."""
    params = inspect.signature(generate).parameters
    kwargs: dict[str, Any] = {}
    for name in ("count", "n", "size"):
        if name in params:
            kwargs[name] = count
            break
    if "rng" in params:
        kwargs["rng"] = rng
    elif "seed" in params:
        kwargs["seed"] = rng.randrange(2**31)
    try:
        produced = generate(**kwargs) if kwargs else generate(count)
        events = [e.model_dump(mode="json") if hasattr(e, "model_dump") else dict(e)
                  for _, e in zip(range(count), produced, strict=False)]
    except (TypeError, ValueError):
        return None
    return events or None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def network_flow(rng: random.Random, host: int | None = None, scan: bool = False) -> dict[str, Any]:
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
    simulator = _simulator()
    if simulator is not None:
        events = _from_simulator(simulator, count, rng)
        if events is not None:
            return events
    return crafted(count, rng)
