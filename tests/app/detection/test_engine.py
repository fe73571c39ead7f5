import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from immune_core.cells.base import AnyEvent, CellConfigError, CellContext
from immune_core.cells.observation import CellOutput
from immune_core.detection.engine import CellSpec, DetectionConfig, DetectionEngine
from immune_core.events.models import parse_event
from immune_core.simulator.records import EventFactory

from tests.app.detection.support import SCANNER, scan_flows

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _factory() -> EventFactory:
    return EventFactory(random.Random(11))


def scan(make: EventFactory, start_s: float, ports: int, src: str = SCANNER) -> list[Any]:
    return [parse_event(e) for e in scan_flows(make, T0 + timedelta(seconds=start_s), ports, src)]


def run(engine: DetectionEngine, events: list[Any]) -> list[Any]:
    threats = []
    for event in events:
        threats.extend(engine.process(event))
    return threats


def test_default_engine_runs_the_four_innate_cells() -> None:
    engine = DetectionEngine()
    assert [cell.cell_type for cell in engine.cells] == ["neutrophil", "macrophage", "nk_cell", "dendritic"]
    described = engine.describe()
    assert [entry["id"] for entry in described] == [
        "neutrophil-1",
        "macrophage-1",
        "nk_cell-1",
        "dendritic-1",
    ]
    assert {"id", "type", "params", "counters", "state"} <= set(described[0])


def test_a_scan_from_a_known_bad_address_names_both_cells_and_their_reasons() -> None:
    make = _factory()
    engine = DetectionEngine()
    intel = parse_event(make.intel(T0, SCANNER, "ip", "high", "partner-cert", timedelta(days=1)))
    threats = run(engine, [intel, *scan(make, 10, 25)])
    by_category = {threat.category: threat for threat in threats}
    assert set(by_category) == {"known_bad_indicator", "port_scan"}
    scan_threat = by_category["port_scan"]
    assert scan_threat.antigen_type == "source_ip" and scan_threat.antigen == SCANNER
    assert scan_threat.signature == f"port_scan:source_ip:{SCANNER}"
    assert scan_threat.host_id == "srv-web-1"
    assert scan_threat.cells == ["neutrophil"]
    assert "20 distinct ports probed on 10.20.2.10" in scan_threat.evidence[0].reason
    assert len(scan_threat.event_ids) == 20
    assert [item.indicator for item in engine.known_intel()] == [SCANNER]


def test_findings_of_two_cells_on_one_signature_merge_with_noisy_or_confidence() -> None:
    make = _factory()
    engine = DetectionEngine(DetectionConfig(cells=[CellSpec(type="neutrophil")]))
    engine.add_cell("neutrophil", {"port_scan_ports": 20})
    [threat] = run(engine, scan(make, 0, 20))
    assert [e.cell for e in threat.evidence] == ["neutrophil-1", "neutrophil-2"]
    assert threat.confidence == pytest.approx(1 - (1 - 0.6) ** 2)
    assert threat.severity == "medium"


def test_cooldown_suppresses_repeats_by_event_time() -> None:
    make = _factory()
    engine = DetectionEngine(DetectionConfig(cooldown_s=600, cells=[CellSpec(type="neutrophil")]))
    first = run(engine, scan(make, 0, 25))
    again = run(engine, scan(make, 120, 25))  # next window, inside the cool-down
    later = run(engine, scan(make, 700, 25))  # after the cool-down
    assert (len(first), len(again), len(later)) == (1, 0, 1)
    assert engine.counters["suppressed"] >= 1
    assert first[0].threat_id != later[0].threat_id


def test_processing_is_deterministic() -> None:
    def threats_of() -> list[Any]:
        make = _factory()
        return run(DetectionEngine(), scan(make, 0, 30))

    assert [t.model_dump() for t in threats_of()] == [t.model_dump() for t in threats_of()]


def test_clock_follows_event_time_and_late_events_do_not_rewind_it() -> None:
    make = _factory()
    engine = DetectionEngine()
    late, early = scan(make, 100, 1), scan(make, 0, 1)
    engine.process(late[0])
    engine.process(early[0])
    assert engine.clock == late[0].timestamp


def test_add_remove_clone_cells() -> None:
    engine = DetectionEngine()
    added = engine.add_cell("neutrophil", {"window_s": 30})
    assert added.cell_id == "neutrophil-2"
    twin = engine.clone_cell(added.cell_id)
    assert twin.cell_id == "neutrophil-3" and twin.params == added.params
    engine.remove_cell("neutrophil-1")
    assert [c.cell_id for c in engine.cells if c.cell_type == "neutrophil"] == [
        "neutrophil-2",
        "neutrophil-3",
    ]
    with pytest.raises(KeyError):
        engine.remove_cell("neutrophil-1")
    with pytest.raises(CellConfigError, match="window_s"):
        engine.add_cell("neutrophil", {"window_s": "soon"})
    assert engine.add_cell("neutrophil", {}).cell_id == "neutrophil-4"  # no id consumed by the failure


def test_unknown_cell_in_config_fails_at_construction() -> None:
    with pytest.raises(CellConfigError, match="unknown cell type"):
        DetectionEngine(DetectionConfig(cells=[CellSpec(type="plasma_cell")]))


def test_intel_expires_by_event_time() -> None:
    make = _factory()
    engine = DetectionEngine()
    engine.process(parse_event(make.intel(T0, "91.241.1.1", "ip", "high", "feed", timedelta(minutes=5))))
    assert len(engine.known_intel()) == 1
    flow = make.flow(T0 + timedelta(minutes=6), "srv-web-1", "91.241.1.1", "10.20.2.10", 443, 500, 500)
    assert engine.process(parse_event(flow)) == []
    assert engine.known_intel() == []


def test_cytokines_are_drained_once_and_expired_ones_are_dropped() -> None:
    make = _factory()
    engine = DetectionEngine(DetectionConfig(cells=[CellSpec(type="neutrophil")]))
    run(engine, scan(make, 0, 20))
    drained = engine.drain_cytokines()
    assert [c.type for c in drained] == ["il8"]
    assert engine.drain_cytokines() == []
    run(engine, scan(make, 0, 20, src="45.133.7.8"))
    # Time moves on past the il8 TTL (60 s) before anyone drains.
    engine.process(scan(make, 500, 1, src="10.0.0.1")[0])
    assert engine.drain_cytokines() == []


def test_a_failing_cell_is_counted_and_does_not_blind_the_others() -> None:
    make = _factory()
    engine = DetectionEngine(
        DetectionConfig(cells=[CellSpec(type="macrophage"), CellSpec(type="neutrophil")])
    )
    broken = engine.cells[0]

    def explode(event: AnyEvent, context: CellContext) -> CellOutput:
        raise RuntimeError(f"bug on {event.event_id} at {context.now}")

    broken._observe = explode  # type: ignore[method-assign]
    threats = run(engine, scan(make, 0, 20))
    assert [t.category for t in threats] == ["port_scan"]
    assert broken.describe()["counters"]["errors"] == 20
    assert engine.counters["cell_errors"] == 20
