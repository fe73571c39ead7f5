from typing import Any

from immune_core.cells.base import Cell
from immune_core.detection.intel import IntelStore

from tests.app.cells.cell_events import at, endpoint, feed, flow, intel

BAD = "185.220.101.4"


def macrophage() -> Cell[Any]:
    return Cell.create("macrophage", {}, "macrophage-t")


def test_a_source_address_in_live_intel_is_a_known_bad_indicator() -> None:
    out = feed(macrophage(), [intel(0, BAD, 3600, severity="critical"), flow(10, src_ip=BAD)])
    [finding] = out.findings
    assert finding.category == "known_bad_indicator"
    assert str(finding.antigen) == f"source_ip:{BAD}"
    assert finding.severity == "critical"
    assert finding.confidence == 0.95
    assert "source address 185.220.101.4 is a known-bad ip (source test-feed" in finding.reason
    assert [s.kind for s in out.signals] == ["pamp"]
    assert [c.type for c in out.cytokines] == ["tnf"]


def test_contacting_a_bad_destination_blames_the_host() -> None:
    [finding] = feed(macrophage(), [intel(0, BAD, 3600), flow(5, dst_ip=BAD, host_id="ws-3")]).findings
    assert str(finding.antigen) == "host:ws-3"


def test_expired_intel_does_not_match() -> None:
    out = feed(macrophage(), [intel(0, BAD, 60), flow(59, src_ip=BAD), flow(60, src_ip=BAD)])
    assert [f.at for f in out.findings] == [at(59)]


def test_domains_and_hashes_on_endpoint_events() -> None:
    digest = "ab" * 32
    events = [
        intel(0, "Evil.Example.", 3600, indicator_type="domain"),
        intel(0, digest.upper(), 3600, indicator_type="sha256"),
        endpoint(5, "curl", domain="evil.example", host_id="ws-1"),
        endpoint(6, "dropper", sha256=digest, host_id="ws-1"),
    ]
    found = feed(macrophage(), events).findings
    assert [str(f.antigen) for f in found] == ["host:ws-1", "process:ws-1/dropper"]


def test_no_match_gives_no_signal() -> None:
    out = feed(macrophage(), [flow(0)])
    assert out.findings == [] and out.signals == []


def test_intel_store_keeps_the_newest_expiry_and_evicts_expired_items() -> None:
    store = IntelStore(max_items=2)
    assert store.add(intel(0, BAD, 100), at(0))
    assert store.add(intel(10, BAD, 500), at(10))  # the feed re-published it with a longer life
    assert store.lookup("ip", BAD, at(200)) is not None
    assert not store.add(intel(0, "1.2.3.4", 5), at(50))  # already expired on arrival
    store.add(intel(20, "1.2.3.5", 50), at(20))
    store.add(intel(21, "1.2.3.6", 1000), at(21))  # over capacity: the earliest expiry goes first
    assert len(store) == 2
    assert store.lookup("ip", "1.2.3.5", at(22)) is None
    assert [item.indicator for item in store.live(at(600))] == ["1.2.3.6"]
