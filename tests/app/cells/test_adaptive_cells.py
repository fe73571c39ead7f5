"""The adaptive cells and their machinery one by one: features, CLONALG, memory, responses, registry."""

from __future__ import annotations

import numpy as np
import pytest
from immune_core.adaptive.clonalg import ClonalgParams, clonal_selection, seeded_rng
from immune_core.adaptive.features import AntigenProfiles, is_internal, parent_domain
from immune_core.adaptive.state import ClonalExpansion
from immune_core.cells.base import Cell, CellConfigError
from immune_core.cells.cytokine import Cytokine

from tests.app.cells.adaptive_support import detector, engine, first, probes, run, source_vector
from tests.app.cells.cell_events import at, endpoint, flow

SCANNER = "45.133.7.10"


def test_the_adaptive_cell_types_are_registered_at_later_stages() -> None:
    types = Cell.types()
    assert {name: types[name].stage for name in ("helper_t", "regulatory_t", "b_cell", "cytotoxic_t")} == {
        "helper_t": 2,
        "regulatory_t": 2,
        "b_cell": 3,
        "cytotoxic_t": 4,
    }
    with pytest.raises(CellConfigError, match="memory_radius"):
        Cell.create("b_cell", {"memory_radius": 5}, "b-1")


# -- features -------------------------------------------------------------------------------------------
def test_a_scan_and_ordinary_traffic_are_far_apart_in_the_source_space() -> None:
    profiles = AntigenProfiles()
    for event in probes(SCANNER, 20):
        profiles.observe(event)
    for index in range(20):
        profiles.observe(
            flow(index * 10.0, src_ip="10.0.0.5", dst_ip=f"10.0.0.{9 + index % 3}", dst_port=443)
        )
    scan = np.asarray(profiles.sources[SCANNER].vector())
    ordinary = np.asarray(profiles.sources["10.0.0.5"].vector())
    assert scan[1] == 1.0 and scan[2] == 1.0 and scan[3] == 1.0  # every target new, failed, probe-sized
    assert ordinary[1] < 0.2 and ordinary[2] == 0.0
    assert np.linalg.norm(scan - ordinary) > 1.0


def test_channel_regularity_sees_a_dns_beacon_and_not_bulk_or_random_contacts() -> None:
    profiles = AntigenProfiles()
    for beat in range(12):
        name = f"{beat:08x}.c2-example.net"
        profiles.observe(
            flow(beat * 40.0, src_ip="10.0.0.5", dst_ip="10.0.0.53", dst_port=53, bytes_out=80, domain=name)
        )
    regular, quiet, contacts = profiles.hosts["h1"].channel_vector()
    assert regular > 0.95 and quiet > 0.5 and contacts == 1.0
    bulk = AntigenProfiles()
    for beat in range(12):  # periodic, but megabytes each: a backup, not a beacon
        bulk.observe(flow(beat * 40.0, src_ip="10.0.0.5", dst_ip="52.84.1.1", bytes_out=5_000_000))
    assert bulk.hosts["h1"].channel_vector() == (0.0, 0.0, 0.0)
    upload, one_way, chunks = bulk.hosts["h1"].upload_vector()
    assert upload > 0.8 and one_way > 0.99 and chunks > 0.5
    assert parent_domain("a1.b2.c2-example.net") == "c2-example.net"
    assert is_internal("10.20.1.5") and not is_internal("198.18.0.1") and not is_internal("8.8.8.8")


def test_process_vector_marks_an_unsigned_binary_from_a_script_host_in_a_temp_folder() -> None:
    profiles = AntigenProfiles()
    for index in range(10):
        profiles.observe(endpoint(index, "chrome.exe", host_id="ws-1", parent_process="explorer.exe"))
    [seen] = profiles.observe(
        endpoint(
            20,
            "upd.exe",
            signed=False,
            host_id="ws-1",
            parent_process="powershell.exe",
            command_line="C:\\Users\\a\\AppData\\Local\\Temp\\upd.exe",
        )
    )
    assert seen.space == "process" and seen.vector == (1.0, 1.0, 1.0, 1.0, 1.0) and seen.observations == 11
    [normal] = profiles.observe(endpoint(21, "chrome.exe", host_id="ws-1", parent_process="explorer.exe"))
    assert normal.vector == (0.0, 0.0, 0.0, 0.0, 0.0)


# -- CLONALG --------------------------------------------------------------------------------------------
def test_clonal_selection_matures_the_repertoire_towards_the_antigen() -> None:
    antigen = np.array([0.45, 1.0, 1.0, 1.0, 0.0, 0.41])
    rng = seeded_rng("test")
    repertoire = rng.random((20, 6))
    before = float(np.max(1.0 / (1.0 + np.linalg.norm(repertoire - antigen, axis=1))))
    result, pool = clonal_selection(antigen, repertoire, rng, ClonalgParams())
    assert result.affinity > before and result.clones > 20 * 8 and pool.shape == repertoire.shape


def test_clonal_selection_is_deterministic_for_a_seed_and_refuses_bad_shapes() -> None:
    antigen = np.array([0.2, 0.8, 0.5])
    start = seeded_rng("x").random((10, 3))
    first_run, _ = clonal_selection(antigen, start, seeded_rng("y"), ClonalgParams())
    second_run, _ = clonal_selection(antigen, start, seeded_rng("y"), ClonalgParams())
    assert np.array_equal(first_run.best, second_run.best)
    with pytest.raises(ValueError, match="does not fit"):
        clonal_selection(antigen, np.zeros((4, 2)), seeded_rng("z"), ClonalgParams())


# -- B cell: secondary response, expansion events -------------------------------------------------------
def test_secondary_response_is_published_as_a_clonal_expansion() -> None:
    traffic = probes(SCANNER, 10)
    known = detector("source_ip", source_vector(traffic[:8]), "port_scan", stimulations=3)  # judged from 8
    built = engine("b_cell", memory=[known])
    found = first(run(built, traffic))
    assert found is not None and found.category == "port_scan" and found.severity == "high"
    assert found.confidence == pytest.approx(0.85, abs=0.01)  # (0.55 + 0.1 * 3) at distance 0
    expansions, _, _ = built.drain_adaptive()
    assert [e.kind for e in expansions] == ["secondary"]
    ClonalExpansion.model_validate_json(expansions[0].model_dump_json())  # the topic's schema round-trips
    assert expansions[0].feature_names[0] == "targets" and expansions[0].space == "source_ip"


def test_too_little_evidence_is_not_judged() -> None:
    traffic = probes(SCANNER, 7)  # min_source_flows = 8
    known = detector("source_ip", source_vector(traffic), "port_scan")
    assert first(run(engine("b_cell", memory=[known]), traffic)) is None


# -- cytotoxic T: proposals ----------------------------------------------------------------------------
def test_cytotoxic_t_proposes_for_confirmed_threats_only() -> None:
    traffic = probes(SCANNER, 10)
    known = detector("source_ip", source_vector(traffic), "port_scan")
    confirmed = engine("b_cell", "cytotoxic_t", memory=[known])
    run(confirmed, traffic)
    [proposal] = confirmed.drain_proposals()
    assert proposal.action.kind == "block_source" and proposal.action.target == SCANNER
    assert not proposal.action.critical and "immunological memory" in proposal.action.reason
    assert proposal.verdict is None  # for the validator to decide
    # An innate finding of modest confidence, without T-cell help or memory, is not a confirmed threat.
    unconfirmed = engine("neutrophil", "cytotoxic_t")
    run(unconfirmed, probes(SCANNER, 25, gap_s=0.5, target="10.0.1.5"))
    assert unconfirmed.drain_proposals() == []


def test_cytotoxic_t_proposes_once_per_target_within_its_cooldown() -> None:
    built = engine("helper_t", "cytotoxic_t", "neutrophil")
    il8 = Cytokine.emit("il8", "neutrophil-9", "source_ip", SCANNER, at(0), {"category": "port_scan"})
    built.receive_cytokines([il8])
    run(built, probes(SCANNER, 25, gap_s=0.5, target="10.0.1.5"))
    run(built, probes(SCANNER, 25, start_s=400, gap_s=0.5, target="10.0.1.6"))  # raised again after cool-down
    proposals = built.drain_proposals()
    assert [p.action.kind for p in proposals] == ["block_source"]
    assert "helper T licence" in proposals[0].action.reason
