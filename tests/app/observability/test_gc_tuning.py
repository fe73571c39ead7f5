"""The serving process's garbage collector: pauses measured, boot heap frozen only by the process owner."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from immune_core.api.app import create_app
from immune_core.observability.gc_tuning import GcPauses, freeze_boot_heap
from immune_core.settings import Settings
from prometheus_client import CollectorRegistry

from tests.app.support import wait_for


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """Freezing and thresholds are process-wide: every test leaves the interpreter as it found it."""
    threshold = gc.get_threshold()
    assert gc.get_freeze_count() == 0, "another test left objects frozen"
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _full_collections(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("immune_gc_pause_seconds_count", {"generation": "2"})
    return value or 0.0


def test_each_collection_is_recorded_until_uninstalled() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    pauses.install()
    pauses.install()  # idempotent: one callback, one observation per collection
    try:
        gc.collect()
        assert _full_collections(registry) == 1.0
        total = registry.get_sample_value("immune_gc_pause_seconds_sum", {"generation": "2"})
        assert total is not None and total > 0.0
    finally:
        pauses.uninstall()
    gc.collect()
    assert _full_collections(registry) == 1.0  # bad case: nothing is recorded once uninstalled
    assert pauses._callback not in gc.callbacks


@pytest.mark.usefixtures("restore_gc")
def test_freeze_boot_heap_freezes_and_sets_the_young_threshold() -> None:
    _, gen1, gen2 = gc.get_threshold()
    frozen = freeze_boot_heap(50_000)
    assert frozen > 1000 and gc.get_freeze_count() == frozen
    assert gc.get_threshold() == (50_000, gen1, gen2)


@pytest.mark.usefixtures("restore_gc")
def test_a_threshold_below_one_is_refused_before_anything_changes() -> None:
    before = gc.get_threshold()
    with pytest.raises(ValueError, match="at least 1"):
        freeze_boot_heap(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def _serve(settings: Settings, *, tune_gc: bool) -> tuple[TestClient, CollectorRegistry]:
    app = create_app(settings, configure_logs=False, tune_gc=tune_gc)
    client = TestClient(app)
    client.__enter__()
    wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
    return client, app.state.runtime.metrics.registry


@pytest.mark.usefixtures("restore_gc")
def test_only_the_process_owner_freezes_the_heap_and_every_service_reports_pauses(
    make_settings: Callable[..., Settings],
) -> None:
    threshold = gc.get_threshold()
    client, registry = _serve(make_settings(gc_gen0_threshold=40_000), tune_gc=False)
    try:
        gc.collect()
        assert _full_collections(registry) >= 1.0
        assert "immune_gc_pause_seconds_bucket" in client.get("/metrics").text
        # Bad case for the tuning: a service built inside another program leaves its collector alone.
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
    finally:
        client.__exit__(None, None, None)
    client, _ = _serve(make_settings(gc_gen0_threshold=40_000), tune_gc=True)
    try:
        wait_for(lambda: gc.get_freeze_count() > 0, what="boot heap frozen")
        assert gc.get_threshold()[0] == 40_000
    finally:
        client.__exit__(None, None, None)


@pytest.mark.usefixtures("restore_gc")
def test_threshold_zero_leaves_the_collector_as_cpython_sets_it_up(
    make_settings: Callable[..., Settings],
) -> None:
    threshold = gc.get_threshold()
    client, _ = _serve(make_settings(gc_gen0_threshold=0), tune_gc=True)
    try:
        # Ready follows the boot step that would have frozen the heap (same step, no await between).
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
    finally:
        client.__exit__(None, None, None)
