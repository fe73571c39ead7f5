"""Free local ports for the processes tests start (127.0.0.1 only)."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_tcp_ports(count: int) -> list[int]:
    """`count` distinct TCP ports the kernel just handed out on 127.0.0.1; all sockets are held until
    every port is chosen so that no two of them are the same. The caller binds them soon after."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One TCP port on 127.0.0.1 that was free a moment ago (see free_tcp_ports)."""
    return free_tcp_ports(1)[0]


# Kubernetes' default NodePort range starts here (the local cluster runs beside the tests in CI).
_NODE_PORTS_FROM = 30000


def ephemeral_port_floor() -> int:
    """The lowest port the kernel hands out as a connection's local port (ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port_block(size: int, first: int = 20000, step: int = 500) -> int:
    """A base port with `size` consecutive free ports from it (a stack with fixed port offsets: ingress,
    stable, preview, instances), among `first`, `first + step`, ... below the ephemeral range and the
    NodePort range. Below the ephemeral range because these ports are bound minutes after they were
    found free: inside it, any outgoing connection on the machine may take one as its local port
    meanwhile (seen in CI: a fresh baseline's port taken, "address already in use" until the deploy timed
    out). The blocks are tried in random order: parallel test workers and other sessions on the machine
    would otherwise all pick the first free one at once. Raises RuntimeError when no block is free."""
    limit = min(_NODE_PORTS_FROM, ephemeral_port_floor())
    bases = range(first, limit - size + 1, step)
    for base in random.sample(bases, k=len(bases)):
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no block of {size} free ports between {first} and {limit}")
