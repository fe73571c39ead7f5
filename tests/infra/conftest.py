"""Fixtures shared by the infra tests: renders of the real program under Pulumi's mocks
(tests/infra/support.py) and the real engine (tests/support/engine.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from immune_infra.render import REPOSITORY_ROOT, RenderedStack

from tests.infra.kafka_support import kafka_lib_dir
from tests.infra.support import render
from tests.support.engine import engine_env, engine_project, passphrase  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def staging() -> RenderedStack:
    return render("staging")


@pytest.fixture(scope="session")
def prod() -> RenderedStack:
    return render("prod")


@pytest.fixture(params=["staging", "prod"], scope="session")
def stack(request: pytest.FixtureRequest) -> RenderedStack:
    return render(request.param)


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """Kafka's jars (scripts/services/kafka.sh install), for the start-script tests."""
    return kafka_lib_dir()


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool (the package the Prometheus image is built from; Debian's prometheus package
    ships it), installed by the project's own installer when absent."""
    found = shutil.which("promtool")
    if found is None:
        subprocess.run([str(REPOSITORY_ROOT / "scripts/services/prometheus.sh"), "install"], check=True)
        found = shutil.which("promtool")
    assert found, "promtool not available after scripts/services/prometheus.sh install"
    return found
