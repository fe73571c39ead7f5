"""`/health/ready`'s reasons name the condition that failed, not a guess among several."""

from __future__ import annotations

from immune_core.api.health import not_ready_reasons

HEALTHY = {"database": "ok", "redis": "ok", "kafka": "ok", "consumer": "ok"}


def test_each_failed_condition_is_named() -> None:
    assert not_ready_reasons({**HEALTHY, "database": "down"}, booted=True) == [
        "database down (no answer to a ping within the readiness bound)"
    ]
    assert not_ready_reasons(HEALTHY, booted=False) == ["still booting (replay and detection state)"]
    stuck = not_ready_reasons({**HEALTHY, "consumer": "stuck"}, booted=True)
    assert stuck == ["detection consumer stuck: accepted events are not being processed"]
    both = not_ready_reasons({**HEALTHY, "database": "down", "consumer": "crash_looping"}, booted=False)
    assert len(both) == 3 and "crash_looping" in both[2]


def test_degraded_optional_dependencies_are_no_reason() -> None:
    # Redis and Kafka down degrade the service; a starting consumer is not a fault (health.py).
    degraded = {**HEALTHY, "redis": "down", "kafka": "down", "consumer": "starting"}
    assert not_ready_reasons(degraded, booted=True) == ["not ready"]
