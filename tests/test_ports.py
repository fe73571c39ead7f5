"""The test port blocks: free when chosen, and out of the kernel's ephemeral range (where any outgoing
connection could take one before the stack that owns it binds it)."""

from __future__ import annotations

import socket

import pytest

from tests.support.ports import ephemeral_port_floor, free_port_block


def test_a_block_is_free_and_below_the_ephemeral_and_nodeport_ranges() -> None:
    base = free_port_block(50, step=250)
    assert base + 50 <= min(30000, ephemeral_port_floor())
    for port in range(base, base + 50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if the block was not free


def test_a_block_with_a_port_in_use_is_skipped() -> None:
    # Three candidate blocks of 10 just below 30000; two of them hold a listening port.
    held = []
    try:
        for port in (29975, 29985):
            sock = socket.socket()
            sock.bind(("127.0.0.1", port))
            held.append(sock)
        for _ in range(5):  # random order: every draw must skip the held blocks
            assert free_port_block(10, first=29970, step=10) == 29990
        sock = socket.socket()
        sock.bind(("127.0.0.1", 29995))
        held.append(sock)
        with pytest.raises(RuntimeError, match="no block of 10 free ports"):
            free_port_block(10, first=29970, step=10)
    finally:
        for sock in held:
            sock.close()
