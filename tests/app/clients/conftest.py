"""Fixtures of the clients' tests: real local servers of each external service's contract."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.app.clients.servers import ServiceServer, build


@pytest.fixture
def servers() -> Iterator[Callable[..., ServiceServer]]:
    """`servers(service, behaviour=None)` starts a server of `service`'s contract; all are stopped after."""
    started: list[ServiceServer] = []

    def start(service: str, behaviour: Any = None) -> ServiceServer:
        server = build(service, behaviour)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
