"""The adaptive layer's closed loops: each test has the loop's input on and off, and fails without it.

* memory -> a faster, stronger secondary response (B cells' memory detectors);
* homeostatic level -> cell sensitivity;
* cytokines read -> activation (helper T licence, B-cell primary response) and recruitment (radius);
* regulatory T -> tolerance to self (negative selection) and damping of responses at high alert.
"""

from __future__ import annotations

import numpy as np
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen
from immune_core.simulator.quality import ADAPTIVE_CELLS, INNATE_CELLS, run_scenario, train_memory

from tests.app.cells.adaptive_support import detector, engine, first, probes, run, source_vector
from tests.app.cells.cell_events import at, endpoint

SCANNER = "45.133.7.10"


def _offset(vector: np.ndarray, distance: float) -> np.ndarray:
    """A point ``distance`` away from ``vector`` along the axis with the most room inside [0, 1]."""
    shifted = vector.copy()
    axis = int(np.argmax(np.minimum(vector, 1 - vector)))
    shifted[axis] += distance if vector[axis] + distance <= 1 else -distance
    return shifted


# -- memory: faster and stronger secondary response -------------------------------------------------
def test_memory_gives_a_faster_stronger_response_to_a_known_threat() -> None:
    memory = train_memory([1000], scenarios=["port_scan"])
    assert [d.category for d in memory] == ["port_scan"]
    naive = run_scenario("port_scan", 0, ADAPTIVE_CELLS)
    primed = run_scenario("port_scan", 0, ADAPTIVE_CELLS, memory)
    naive_ttd, primed_ttd = naive.time_to_detect("port_scan"), primed.time_to_detect("port_scan")
    assert naive_ttd is not None and primed_ttd is not None
    assert primed_ttd < naive_ttd  # recognised before the neutrophil's 20 ports
    [antigen] = primed.result.attack_antigens
    on_scanner = [t for t in primed.threats if f"{t.antigen_type}:{t.antigen}" == antigen]
    assert "b_cell" in on_scanner[0].cells and "memory detector" in on_scanner[0].evidence[0].reason
    assert primed.result.false_positives == set()


def test_memory_catches_a_variant_the_innate_layer_misses() -> None:
    memory = train_memory([1000], scenarios=["port_scan"])
    assert run_scenario("spread_scan", 0, INNATE_CELLS).result.detected == {"spread_scan": False}
    without_memory = run_scenario("spread_scan", 0, ADAPTIVE_CELLS)
    assert without_memory.result.detected == {"spread_scan": False}
    with_memory = run_scenario("spread_scan", 0, ADAPTIVE_CELLS, memory)
    assert with_memory.result.detected == {"spread_scan": True}
    assert with_memory.result.false_positives == set()


def test_no_memory_is_made_without_t_cell_help() -> None:
    helped = engine("neutrophil", "helper_t", "b_cell")
    unhelped = engine("neutrophil", "b_cell")
    fast_scan = probes(SCANNER, 30, gap_s=0.5, target="10.0.1.5")
    run(helped, fast_scan)
    run(unhelped, fast_scan)
    assert [d.category for d in helped.memory_detectors()] == ["port_scan"]
    assert unhelped.memory_detectors() == []
    expansions, persisted, _ = helped.drain_adaptive()
    assert (
        expansions[0].kind == "primary" and expansions[0].clones > 0 and expansions[0].category == "port_scan"
    )
    assert [d.detector_id for d in persisted] == [expansions[0].detector_id]


# -- homeostatic level -> sensitivity -----------------------------------------------------------------
def test_a_higher_threat_level_widens_recognition() -> None:
    traffic = probes(SCANNER, 10)
    near = detector("source_ip", _offset(source_vector(traffic), 0.3), "port_scan", radius=0.25)
    calm = engine("b_cell", memory=[near], level=0)
    alert = engine("b_cell", memory=[near], level=3)  # radius x (1 + 0.2 * 3) = 0.4 > 0.3
    assert first(run(calm, traffic)) is None
    found = first(run(alert, traffic))
    assert (
        found is not None and found.category == "port_scan" and "threat level 3" in found.evidence[0].reason
    )


def test_a_higher_threat_level_activates_helper_t_on_less_evidence() -> None:
    traffic = probes(SCANNER, 3)
    il8 = Cytokine.emit("il8", "neutrophil-9", "source_ip", SCANNER, at(1), {"category": "port_scan"})
    licensed: dict[int, bool] = {}
    for level in (0, 3):
        # One il8 weighs 1: under the threshold 1.5 at baseline, over 1.5 / (1 + 0.25 * 3) when critical.
        helper = engine("helper_t", level=level, params={"helper_t": {"activation_threshold": 1.5}})
        run(helper, traffic[:1])
        assert helper.receive_cytokines([il8]) == 1
        run(helper, traffic[1:])
        licensed[level] = helper.adaptive.licence(Antigen("source_ip", SCANNER), at(20)) is not None
    assert licensed == {0: False, 3: True}


# -- cytokines read: activation and recruitment -------------------------------------------------------
def test_a_cytokine_read_from_the_topic_activates_helper_t_and_b_cells() -> None:
    traffic = probes(SCANNER, 12)
    il8 = Cytokine.emit("il8", "neutrophil-1", "source_ip", SCANNER, at(5), {"category": "port_scan"})
    read = engine("helper_t", "b_cell")
    unread = engine("helper_t", "b_cell")
    run(read, traffic[:6])
    run(unread, traffic[:6])
    assert read.receive_cytokines([il8]) == 1  # from another replica, through immunis.cytokines.il8
    assert read.receive_cytokines([il8]) == 0  # the same cytokine again (its id) is not read twice
    read_threats, unread_threats = run(read, traffic[6:]), run(unread, traffic[6:])
    licence = read.adaptive.licence(Antigen("source_ip", SCANNER), at(60))
    assert licence is not None and licence.category == "port_scan"
    assert [d.category for d in read.memory_detectors()] == ["port_scan"]
    assert unread.adaptive.licence(Antigen("source_ip", SCANNER), at(60)) is None
    assert unread.memory_detectors() == []
    il2 = [c for c in read.drain_cytokines() if c.type == "il2"]
    assert [c.antigen for c in il2] == [SCANNER] and not read_threats and not unread_threats


def test_an_expired_cytokine_activates_nothing() -> None:
    traffic = probes(SCANNER, 12)
    stale = Cytokine.emit("il8", "neutrophil-1", "source_ip", SCANNER, at(-120), {"category": "port_scan"})
    built = engine("helper_t", "b_cell")
    run(built, traffic[:6])
    assert built.receive_cytokines([stale]) == 0  # il8 lives 60 s
    run(built, traffic[6:])
    assert built.memory_detectors() == []


def test_inflammation_in_the_region_recruits_b_cells_to_it() -> None:
    traffic = probes(SCANNER, 10)
    near = detector("source_ip", _offset(source_vector(traffic), 0.3), "port_scan", radius=0.25)
    # Another address of the same /24 was just caught: the region is inflamed (radius x 1.5 = 0.375).
    neighbour = Cytokine.emit(
        "il8", "neutrophil-1", "source_ip", "45.133.7.99", at(0), {"category": "port_scan"}
    )
    quiet, inflamed = engine("b_cell", memory=[near]), engine("b_cell", memory=[near])
    run(quiet, traffic[:1])
    run(inflamed, traffic[:1])
    inflamed.receive_cytokines([neighbour])
    assert first(run(quiet, traffic[1:])) is None
    found = first(run(inflamed, traffic[1:]))
    assert found is not None and found.antigen == SCANNER and "sensitivity x1.50" in found.evidence[0].reason


# -- regulatory T: tolerance to self ------------------------------------------------------------------
def _workstation_starts() -> list:
    """A workstation that runs unsigned tools from explorer.exe now and then (normal there)."""
    events = []
    for index in range(60):
        unsigned = index % 4 == 0
        events.append(
            endpoint(
                index * 30.0,
                "portable-tool.exe" if unsigned else f"app{index % 7}.exe",
                signed=not unsigned,
                host_id="ws-01",
                parent_process="explorer.exe",
                user="alice",
            )
        )
    return events


def test_negative_selection_removes_a_detector_that_reacts_to_self() -> None:
    # A detector that (wrongly) learned "unsigned, started by explorer" as an attack.
    self_reactive = detector("process", [1.0, 0.0, 0.0, 0.0, 0.0], "unsigned_process")
    starts = _workstation_starts()
    untolerant = engine("b_cell", memory=[self_reactive])
    tolerant = engine(
        "regulatory_t", "b_cell", memory=[self_reactive], params={"regulatory_t": {"training_s": 600}}
    )
    assert any(t.antigen == "ws-01/portable-tool.exe" for t in run(untolerant, starts))
    assert run(tolerant, starts) == []
    assert tolerant.memory_detectors() == []
    _, _, deleted = tolerant.drain_adaptive()
    assert deleted == ["d-1"]


def test_negative_selection_shrinks_a_detector_that_borders_self_but_keeps_it() -> None:
    attack_like = detector("process", [1.0, 1.0, 1.0, 1.0, 1.0], "unsigned_process", radius=0.25)
    tolerant = engine(
        "regulatory_t", "b_cell", memory=[attack_like], params={"regulatory_t": {"training_s": 600}}
    )
    run(tolerant, _workstation_starts())
    [kept] = tolerant.memory_detectors()
    assert kept.radius == 0.25 and not kept.tolerated  # self is far from it: nothing to shrink


# -- regulatory T: damping at high alert -------------------------------------------------------------
def _confirmed_threats(built, hosts: int) -> list:
    """``hosts`` unsigned-process threats the memory confirms (critical: kill_process)."""
    memory_hit = detector("process", [1.0, 1.0, 1.0, 1.0, 1.0], "unsigned_process", stimulations=4)
    built.load_memory([memory_hit])
    events = []
    for host in range(hosts):
        for index in range(21):  # enough process starts on the host before the dropper
            events.append(
                endpoint(index, f"daemon{index % 3}", host_id=f"srv-{host}", parent_process="systemd")
            )
        events.append(
            endpoint(
                30 + host,
                "dropper",
                signed=False,
                host_id=f"srv-{host}",
                parent_process="bash",
                command_line="/tmp/.x/dropper",
            )
        )
    events.sort(key=lambda e: e.timestamp)
    return run(built, events)


def test_at_high_alert_regulatory_t_damps_critical_actions() -> None:
    damped = engine(
        "regulatory_t", "b_cell", "cytotoxic_t", level=3, params={"regulatory_t": {"training_s": 0}}
    )
    undamped = engine("b_cell", "cytotoxic_t", level=3)
    assert len(_confirmed_threats(damped, 6)) == len(_confirmed_threats(undamped, 6)) == 6
    damped_proposals, undamped_proposals = damped.drain_proposals(), undamped.drain_proposals()
    assert len(undamped_proposals) == 6 and all(p.verdict is None for p in undamped_proposals)
    held = [p for p in damped_proposals if p.verdict is not None]
    assert len(damped_proposals) == 6 and len(held) == 3  # max_critical_per_window = 3
    assert all(p.verdict.decision == "deny" and "damped" in p.verdict.reason for p in held if p.verdict)
    assert {p.action.kind for p in damped_proposals} == {"kill_process"}


def test_at_baseline_regulatory_t_does_not_damp() -> None:
    calm = engine(
        "regulatory_t", "b_cell", "cytotoxic_t", level=0, params={"regulatory_t": {"training_s": 0}}
    )
    _confirmed_threats(calm, 6)
    assert all(p.verdict is None for p in calm.drain_proposals())
