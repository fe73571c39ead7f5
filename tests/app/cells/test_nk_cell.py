import math

import pytest
from immune_core.cells.base import Cell
from immune_core.cells.baseline import Ewma, coefficient_of_variation
from immune_core.cells.nk_cell import NKCell
from immune_core.events.models import EndpointEvent, NetworkFlow

from tests.app.cells.cell_events import endpoint, feed, flow


def nk(**params: object) -> NKCell:
    cell = Cell.create("nk_cell", params, "nk-t")
    assert isinstance(cell, NKCell)
    return cell


def test_ewma_follows_the_textbook_recursion() -> None:
    ewma = Ewma(alpha=0.5)
    for value in (2.0, 4.0, 4.0):
        ewma.update(value)
    # mean: 2 -> 3 -> 3.5; variance: 0 -> 0.5*(0 + 2*1) = 1 -> 0.5*(1 + 1*0.5) = 0.75
    assert ewma.mean == pytest.approx(3.5)
    assert ewma.variance == pytest.approx(0.75)
    assert ewma.zscore(3.5 + math.sqrt(0.75) * 2, min_std=0.1) == pytest.approx(2.0)
    assert ewma.zscore(4.0, min_std=10.0) == pytest.approx(0.05)


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([30.0, 30.0, 30.0]) == (30.0, 0.0)
    mean, cv = coefficient_of_variation([10.0, 30.0])
    assert (mean, cv) == (20.0, 0.5)


def _baseline(count: int, start: float = 0.0) -> list[NetworkFlow]:
    sizes = (1_500, 2_500, 1_800, 3_000, 2_200)
    return [flow(start + i * 5, dst_ip=f"52.84.0.{i % 7 + 1}", bytes_out=sizes[i % 5]) for i in range(count)]


def test_no_exfiltration_verdict_during_warm_up() -> None:
    cell = nk(warmup_flows=30, exfil_min_bytes=1_000_000)
    out = feed(cell, [*_baseline(10), flow(60, dst_ip="146.70.1.1", bytes_out=50_000_000)])
    assert out.findings == []


def test_exfiltration_after_warm_up_names_host_destination_and_z() -> None:
    cell = nk(warmup_flows=30, exfil_min_bytes=20_000_000)
    chunks = [flow(200 + i * 5, dst_ip="146.70.1.1", bytes_out=6_000_000) for i in range(4)]
    out = feed(cell, [*_baseline(40), *chunks])
    [finding] = out.findings
    assert finding.category == "exfiltration"
    assert str(finding.antigen) == "host:h1"
    assert "sent 24,000,000 bytes to 146.70.1.1 in 4 flows" in finding.reason
    assert len(finding.event_ids) == 4
    assert [c.type for c in out.cytokines] == ["ifn_gamma"]


def test_flows_sent_to_the_host_do_not_shape_its_upstream_baseline() -> None:
    cell = nk(warmup_flows=30, exfil_min_bytes=20_000_000)
    inbound_scan = [flow(i, src_ip="45.133.1.1", dst_ip="10.0.0.5", bytes_out=60) for i in range(200)]
    out = feed(cell, [*_baseline(40, start=300), *inbound_scan, *_baseline(40, start=600)])
    assert not [s for s in out.signals if s.kind == "danger"]


def _beacons(period: float, jitter: list[float], dst: str = "77.91.2.3") -> list[NetworkFlow]:
    return [
        flow(i * period + jitter[i % len(jitter)], dst_ip=dst, dst_port=8443, bytes_out=400)
        for i in range(10)
    ]


def test_periodic_small_connections_to_one_external_address_are_beaconing() -> None:
    out = feed(nk(), _beacons(30.0, [0.0, 0.5, -0.5, 0.3]))
    beacon = [f for f in out.findings if f.category == "beaconing"]
    assert len(beacon) == 1
    assert "77.91.2.3:8443 8 times every 30.0 s" in beacon[0].reason


def test_irregular_or_internal_connections_are_not_beaconing() -> None:
    jittery = feed(nk(), _beacons(30.0, [0.0, 12.0, -9.0, 5.0, -14.0]))
    internal = feed(nk(), _beacons(30.0, [0.0], dst="10.0.0.40"))
    assert not [f for f in (*jittery.findings, *internal.findings) if f.category == "beaconing"]


def _server_history(count: int) -> list[EndpointEvent]:
    daemons = ("sshd", "cron", "nginx", "rsyslogd")
    return [endpoint(i, daemons[i % 4]) for i in range(count)]


def test_unsigned_process_on_a_stable_all_signed_server() -> None:
    cell = nk(warmup_process_events=20, stable_after_events=20)
    out = feed(cell, [*_server_history(40), endpoint(100, "kworkerd", signed=False, parent_process="bash")])
    [finding] = out.findings
    assert finding.category == "unsigned_process"
    assert str(finding.antigen) == "process:srv-1/kworkerd"
    assert "where 0.0% of 40 process starts were unsigned" in finding.reason


def test_unsigned_process_during_warm_up_is_not_flagged() -> None:
    cell = nk(warmup_process_events=50, stable_after_events=20)
    out = feed(cell, [*_server_history(40), endpoint(100, "kworkerd", signed=False)])
    assert out.findings == []


def test_host_that_keeps_gaining_processes_only_gives_danger_signals() -> None:
    cell = nk(warmup_process_events=20, stable_after_events=20)
    workstation = [endpoint(i, f"app-{i % 7 if i % 3 else i}.exe", host_id="ws-1") for i in range(60)]
    out = feed(cell, [*workstation, endpoint(100, "tool.exe", signed=False, host_id="ws-1")])
    assert out.findings == []
    assert out.signals[-1].kind == "danger"


def test_never_seen_process_from_an_odd_parent_on_a_stable_server_then_tolerance() -> None:
    cell = nk(warmup_process_events=20, stable_after_events=20, tolerance_sightings=3)
    out = feed(cell, [*_server_history(40), endpoint(100, "socat", parent_process="bash")])
    [finding] = out.findings
    assert finding.category == "unknown_process"
    assert "started by bash, which had started none of the 4 known processes of srv-1" in finding.reason
    # Seen again it is a candidate (no repeated verdict or danger); at the third sighting it is self.
    again = feed(cell, [endpoint(101 + i, "socat", parent_process="bash") for i in range(3)])
    assert again.findings == []
    assert [s.kind for s in again.signals] == ["safe"]


def test_rare_daemon_started_by_the_usual_parent_is_only_a_danger_signal() -> None:
    cell = nk(warmup_process_events=20, stable_after_events=20)
    out = feed(cell, [*_server_history(40), endpoint(100, "weekly-backup")])
    assert out.findings == []
    assert [s.kind for s in out.signals][-1] == "danger"


def test_unsigned_binary_from_an_odd_parent_is_flagged_even_on_a_changing_server() -> None:
    cell = nk(warmup_process_events=20, stable_after_events=50)
    history = [*_server_history(30), endpoint(31, "weekly-backup")]  # the set just changed: not stable
    out = feed(cell, [*history, endpoint(32, "kworkerd", signed=False, parent_process="bash")])
    [finding] = out.findings
    assert finding.category == "unsigned_process"
    assert "(parent bash, never a parent here, user root)" in finding.reason


def test_the_windowed_byte_total_drops_flows_that_leave_the_window() -> None:
    # The reason names the total within exfil_window_s (kept as flows enter and leave, not re-summed):
    # an early large burst out of the window must not count, and later flows within it must.
    cell = nk(warmup_flows=30, exfil_min_bytes=20_000_000, exfil_window_s=100)
    early = [flow(200 + i, dst_ip="146.70.1.1", bytes_out=6_000_000) for i in range(4)]
    late = [flow(400 + i * 5, dst_ip="146.70.1.1", bytes_out=7_000_000) for i in range(3)]
    out = feed(cell, [*_baseline(40), *early, *late])
    reasons = [f.reason for f in out.findings]
    assert any("sent 24,000,000 bytes to 146.70.1.1 in 4 flows" in r for r in reasons), reasons
    assert any("sent 21,000,000 bytes to 146.70.1.1 in 3 flows" in r for r in reasons), reasons
    assert not any("45,000,000" in r or "in 7 flows" in r for r in reasons), reasons
