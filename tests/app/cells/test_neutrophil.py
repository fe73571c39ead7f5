from immune_core.cells.base import Cell
from immune_core.cells.neutrophil import Neutrophil

from tests.app.cells.cell_events import endpoint, feed, flow


def neutrophil(**params: object) -> Neutrophil:
    cell = Cell.create("neutrophil", params, "neutrophil-t")
    assert isinstance(cell, Neutrophil)
    return cell


def test_port_scan_fires_exactly_at_the_threshold() -> None:
    cell = neutrophil(port_scan_ports=10)
    scan = [flow(i, src_ip="198.51.100.7", dst_port=1000 + i, conn_state="rejected") for i in range(9)]
    assert feed(cell, scan).findings == []
    out = feed(cell, [flow(9.5, src_ip="198.51.100.7", dst_port=2000, conn_state="rejected")])
    [finding] = out.findings
    assert finding.category == "port_scan"
    assert str(finding.antigen) == "source_ip:198.51.100.7"
    assert "10 distinct ports probed on 10.0.0.9 within 60 s" in finding.reason
    assert any(s.kind == "pamp" for s in out.signals)
    assert [c.type for c in out.cytokines] == ["il8"]


def test_window_evicts_old_flows_so_a_slow_scan_stays_below_threshold() -> None:
    cell = neutrophil(port_scan_ports=10, window_s=60)
    # One new port every 10 s: never more than 7 inside any 60 s window.
    slow = [flow(i * 10, src_ip="198.51.100.7", dst_port=1000 + i) for i in range(30)]
    assert feed(cell, slow).findings == []
    assert cell.state_summary() == {"tracked_sources": 1}


def test_same_port_on_many_hosts_is_a_network_sweep() -> None:
    cell = neutrophil(sweep_hosts=5)
    sweep = [
        flow(i, src_ip="10.0.0.66", dst_ip=f"10.0.1.{i + 1}", dst_port=445, conn_state="rejected")
        for i in range(5)
    ]
    [finding] = feed(cell, sweep).findings
    assert finding.category == "network_sweep"
    assert "5 distinct hosts contacted on port 445" in finding.reason


def test_short_ssh_sessions_are_brute_force_but_pooled_database_flows_are_not() -> None:
    cell = neutrophil(brute_force_attempts=5)
    guesses = [flow(i, src_ip="203.0.113.5", dst_port=22, bytes_out=2_000) for i in range(5)]
    [finding] = feed(cell, guesses).findings
    assert finding.category == "brute_force"
    assert finding.severity == "high"
    pooled = [flow(100 + i, src_ip="10.0.0.20", dst_port=5432, bytes_out=900) for i in range(50)]
    assert feed(cell, pooled).findings == []


def test_failed_database_logins_count_as_attempts() -> None:
    cell = neutrophil(brute_force_attempts=5)
    failures = [flow(i, src_ip="10.0.0.20", dst_port=5432, conn_state="reset") for i in range(5)]
    assert [f.category for f in feed(cell, failures).findings] == ["brute_force"]


def test_login_failed_endpoint_events_count_for_the_remote_address() -> None:

    cell = neutrophil(brute_force_attempts=4)
    logins = [endpoint(i, "sshd", action="login_failed", remote_ip="203.0.113.9") for i in range(4)]
    [finding] = feed(cell, logins).findings
    assert str(finding.antigen) == "source_ip:203.0.113.9"
    assert "against srv-1 within" in finding.reason


def test_a_finding_is_reported_once_per_window_while_the_burst_continues() -> None:
    cell = neutrophil(port_scan_ports=5, window_s=30)
    scan = [flow(i, src_ip="198.51.100.7", dst_port=1000 + i) for i in range(20)]
    assert len(feed(cell, scan).findings) == 1
    later = [flow(40 + i, src_ip="198.51.100.7", dst_port=3000 + i) for i in range(5)]
    assert len(feed(cell, later).findings) == 1


def test_ordinary_flows_give_safe_signals_and_fan_out_gives_danger() -> None:
    cell = neutrophil(port_scan_ports=10, danger_ratio=0.5)
    calm = feed(cell, [flow(0, src_ip="10.0.0.5")])
    assert [s.kind for s in calm.signals] == ["safe"]
    probing = feed(cell, [flow(1 + i, src_ip="10.0.0.77", dst_port=100 + i) for i in range(6)])
    assert probing.signals[-1].kind == "danger"
    assert probing.signals[-1].category == "port_scan"
    assert probing.signals[-1].strength == 0.6
