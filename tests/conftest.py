"""Session fixtures for the real local services (scripts/services/*.sh, driven through tests/services.py).

Tests that use them carry the `integration` marker. `service_env` starts (or reuses) the shared set on
the default ports; `private_services` builds isolated sets for tests that stop or break a service.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.services import SERVICE_NAMES, ServiceSet

SHARED_FOR_TESTS = ("postgres", "redis", "kafka")

# The service's settings come from the environment, so a shell that exported the local services' URLs
# (`eval "$(scripts/services/up.sh)"`) would silently turn every embedded-mode test into a real-service
# one. Tests get URLs from the fixtures below, never from the caller's shell.
_LEAKED_SETTINGS = (
    "IMMUNE_DATABASE_URL",
    "IMMUNE_REDIS_URL",
    "IMMUNE_KAFKA_BOOTSTRAP_SERVERS",
    "IMMUNE_API_TOKENS",
)
for _name in _LEAKED_SETTINGS:
    os.environ.pop(_name, None)


# Fixture scopes whose value several tests share: under pytest-xdist those tests must share a worker.
_SHARED_SCOPES = frozenset({"package", "module", "class"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two rules that keep the phases and the workers of scripts/test.sh honest:

    * a test that uses the Pulumi engine (`engine_env`) carries the `engine` marker, so that the phase that
      runs before the engine is built (`-m "not engine ..."`) never picks it up;
    * under pytest-xdist (`--dist loadgroup`), the tests of a module that share a module- or class-scoped
      fixture (an e2e stack, an engine project, a private service set) get one `xdist_group`, so the
      fixture is built once on one worker, as in a serial run; every other test is distributed alone.
    """
    for item in items:
        if "engine_env" in getattr(item, "fixturenames", ()) and item.get_closest_marker("engine") is None:
            item.add_marker(pytest.mark.engine)
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("xdist_group") is not None:
            continue
        shared = any(
            definitions[-1].scope in _SHARED_SCOPES
            for definitions in (info.name2fixturedefs.get(name) for name in item.fixturenames)
            if definitions
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="session")
def service_env() -> dict[str, str]:
    """The IMMUNE_* settings of the shared PostgreSQL, Redis and Kafka, started if they are not running.
    They are left running afterwards: other sessions share them."""
    return ServiceSet.shared(SHARED_FOR_TESTS).start()


@pytest.fixture(scope="session")
def pg_url(service_env: dict[str, str]) -> str:
    return service_env["IMMUNE_DATABASE_URL"]


@pytest.fixture(scope="session")
def redis_url(service_env: dict[str, str]) -> str:
    return service_env["IMMUNE_REDIS_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(service_env: dict[str, str]) -> str:
    return service_env["IMMUNE_KAFKA_BOOTSTRAP_SERVERS"]


PrivateServicesFactory = Callable[..., ServiceSet]


@pytest.fixture
def private_services() -> Iterator[PrivateServicesFactory]:
    """`private_services("postgres", "kafka")` starts an isolated set on free ports in a fresh temporary
    state dir and returns it (already started; `.env()` gives its URLs, `["kafka"].stop()` etc. act on one
    service). At teardown every set is stopped and its state dir removed."""
    started: list[ServiceSet] = []

    def start(*names: str) -> ServiceSet:
        service_set = ServiceSet.private(names or SERVICE_NAMES)
        started.append(service_set)
        service_set.start()
        return service_set

    yield start
    for service_set in reversed(started):
        service_set.discard()
