"""Free local ports for the processes tests start (127.0.0.1 only)."""

from __future__ import annotations

import random
import socket


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


def free_port_block(size: int, first: int = 31000, step: int = 500) -> int:
    """A base port with `size` consecutive free ports from it (a stack with fixed port offsets: ingress,
    stable, preview, instances), among `first`, `first + step`, ... below 60000. The blocks are tried in
    random order: parallel test workers and other sessions on the machine would otherwise all pick the
    first free one at once. Raises RuntimeError when no block is free."""
    bases = range(first, 60000, step)
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
    raise RuntimeError(f"no block of {size} free ports between {first} and 60000")
