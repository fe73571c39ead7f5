"""The engine's event-time clock is a watermark bounded by the wall clock, with an allowed lateness."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from immune_core.detection.engine import DetectionConfig, DetectionEngine
from immune_core.events.models import IntelItem, NetworkFlow, parse_event
from immune_core.simulator.records import EventFactory

from tests.app.detection.support import SCANNER, scan_flows

WALL = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _engine(**config: Any) -> DetectionEngine:
    return DetectionEngine(DetectionConfig(**config), wall_clock=lambda: WALL)


def _scan(make: EventFactory, start: datetime, ports: int = 30, src: str = SCANNER) -> list[Any]:
    return [parse_event(e, now=WALL) for e in scan_flows(make, start, ports, src)]


def _unchecked_flow(make: EventFactory, at: datetime, src: str = "192.0.2.66") -> NetworkFlow:
    # Built without parse_event's clock bound: what a replay of old data or a caller in code can hand over.
    return NetworkFlow.model_validate(make.flow(at, "srv-web-1", src, "10.20.2.10", 443, 100, 100))


def _categories(engine: DetectionEngine, events: list[Any]) -> list[str]:
    return [threat.category for event in events for threat in engine.process(event)]


def test_an_event_from_the_far_future_cannot_move_the_watermark_past_wall_time_plus_skew() -> None:
    make = EventFactory(random.Random(3))
    engine = _engine(max_clock_skew_s=300)
    engine.process(_unchecked_flow(make, datetime(2100, 1, 1, tzinfo=UTC)))
    assert engine.watermark == WALL + timedelta(seconds=300)
    assert engine.counters["future_events"] == 1
    assert "port_scan" in _categories(engine, _scan(make, WALL - timedelta(seconds=30)))


def test_a_sensor_a_few_minutes_fast_does_not_blind_detection_of_correct_sensors() -> None:
    make = EventFactory(random.Random(4))
    engine = _engine(max_clock_skew_s=300, allowed_lateness_s=600)
    fast = parse_event(
        make.flow(WALL + timedelta(minutes=4), "h", "10.9.9.9", "10.0.0.1", 443, 1, 1), now=WALL
    )
    engine.process(fast)
    assert engine.watermark == WALL + timedelta(minutes=4)
    # The scan is 4 minutes behind the watermark, within the allowed lateness: evaluated at its own time.
    assert "port_scan" in _categories(engine, _scan(make, WALL))
    assert engine.counters["late_events"] == 0


def test_the_same_fast_sensor_blinds_an_engine_without_allowed_lateness() -> None:
    # The bad case the allowed lateness exists for: judged at the watermark, the scan's contacts fall
    # out of the 60 s window as soon as they are added.
    make = EventFactory(random.Random(4))
    engine = _engine(max_clock_skew_s=300, allowed_lateness_s=0)
    engine.process(
        parse_event(make.flow(WALL + timedelta(minutes=4), "h", "10.9.9.9", "10.0.0.1", 443, 1, 1), now=WALL)
    )
    assert "port_scan" not in _categories(engine, _scan(make, WALL))
    assert engine.counters["late_events"] == 30


def test_the_watermark_never_moves_backwards_and_counts_events_beyond_the_lateness() -> None:
    make = EventFactory(random.Random(5))
    engine = _engine(allowed_lateness_s=60)
    engine.process(_unchecked_flow(make, WALL))
    engine.process(_unchecked_flow(make, WALL - timedelta(seconds=30)))
    assert engine.counters["late_events"] == 0
    engine.process(_unchecked_flow(make, WALL - timedelta(hours=2)))
    assert engine.watermark == WALL
    assert engine.counters["late_events"] == 1


def test_a_too_late_event_still_shows_what_it_shows_on_its_own() -> None:
    make = EventFactory(random.Random(6))
    engine = _engine(allowed_lateness_s=60)
    intel = parse_event(
        make.intel(WALL - timedelta(days=1), "192.0.2.66", "ip", "high", "feed", timedelta(days=7)), now=WALL
    )
    assert isinstance(intel, IntelItem)
    engine.process(intel)
    engine.process(_unchecked_flow(make, WALL, src="10.1.1.1"))
    late = _unchecked_flow(make, WALL - timedelta(hours=3))
    assert "known_bad_indicator" in _categories(engine, [late])
    assert engine.counters["late_events"] == 1


def test_the_watermark_follows_the_wall_clock_as_it_advances() -> None:
    wall = [WALL]
    make = EventFactory(random.Random(7))
    engine = DetectionEngine(DetectionConfig(max_clock_skew_s=0), wall_clock=lambda: wall[0])
    engine.process(_unchecked_flow(make, WALL + timedelta(hours=1)))
    assert engine.watermark == WALL
    wall[0] = WALL + timedelta(minutes=30)
    engine.process(_unchecked_flow(make, WALL + timedelta(hours=1)))
    assert engine.watermark == WALL + timedelta(minutes=30)
