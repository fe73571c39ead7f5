"""Every request counted against the backend that really served it, from the ingress's own view.

A real HAProxy with the local stack's config in front of small real servers (tests/suite/
ingress_fixture.py), and the real load generator (locust) through it: a candidate that crashes
on some requests, with or without its own headers, or that drops connections, is counted against
the candidate; a request the ingress could not attribute is counted and fails the step; smoke and
post-check accept only the expected release, from the colour the ingress names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from immune_suite.gates.attribution import UNATTRIBUTED, Attribution, count_by_color, judge_attribution
from immune_suite.gates.load import run_load
from immune_suite.smoke import post_promotion_check, smoke_test
from immune_suite.targets.base import Color, Release, TrafficState
from immune_suite.targets.local.haproxy import attribution
from immune_suite.verdict import Status, Verdict
from tests.suite.targets.local.ingress_fixture import TOKEN, Behaviour, Ingress, started

# serial: a starved HAProxy drops the attribution header the checks count.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.serial]

STABLE = Release("1.0.0", "v1", "git-tree:aaaa")
CANDIDATE = Release("2.0.0", "v2", "git-tree:bbbb")
LOAD_ENV = {"IMMUNE_LOAD_RPS_SCALE": "0.3", "IMMUNE_LOAD_WS_SUBSCRIBERS": "0"}


def _quiet(message: str, **_: object) -> None:
    print(message)


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load(ingress: Ingress, out: Path, seconds: float = 6) -> list[dict[str, object]]:
    env = {**LOAD_ENV, **attribution(ingress.layout).to_env()}
    run_load(
        ingress.url(ingress.layout.ports.ingress_port), TOKEN, out, "baseline", seconds, _quiet, extra_env=env
    )
    return _rows(out / "samples.jsonl")


@pytest.fixture
def crashing_candidate() -> Iterator[Ingress]:
    """Blue stable and healthy; green the candidate, crashing three ways on its API requests."""
    behaviours = {
        "blue-0": Behaviour("blue", STABLE.version),
        "green-0": Behaviour("green", CANDIDATE.version, crash_ratio=0.3, fault_ratio=0.1, drop_ratio=0.1),
    }
    yield from started(behaviours, TrafficState(Color.BLUE, 50))


@pytest.fixture
def healthy_pair() -> Iterator[Ingress]:
    behaviours = {
        "blue-0": Behaviour("blue", STABLE.version),
        "green-0": Behaviour("green", CANDIDATE.version),
    }
    yield from started(behaviours, TrafficState(Color.BLUE, 50))


def test_a_crashing_candidate_is_counted_against_it_through_the_ingress(
    crashing_candidate: Ingress, tmp_path: Path
) -> None:
    before = crashing_candidate.haproxy.ingress_counters()
    rows = _load(crashing_candidate, tmp_path)
    after = crashing_candidate.haproxy.ingress_counters()
    by_color = {c: [r for r in rows if r["color"] == c] for c in {str(r["color"]) for r in rows}}
    assert set(by_color) == {"blue", "green"}, f"every response attributed: {set(by_color)}"
    green_failed = [r for r in by_color["green"] if not r["ok"]]
    # The 500s without any header of the service, its injected 500s and its dropped connections
    # (HAProxy's own 502, never redispatched to blue) are all the candidate's.
    assert {r["status"] for r in green_failed} >= {500, 502}
    assert len(green_failed) / len(by_color["green"]) > 0.2
    assert all(r["ok"] for r in by_color["blue"]), "stable is blamed for nothing"
    assert all(str(r["served_by"]).startswith("ingress/") for r in rows)  # the forged header was replaced
    # The proxy's own counters agree: the candidate's servers failed, stable's did not.
    assert (after["green"] - before["green"]).responses_5xx + (after["green"] - before["green"]).failures > 0
    assert (after["blue"] - before["blue"]).responses_5xx == 0
    judged = judge_attribution(Verdict("canary", Status.PASS, "ok"), [tmp_path / "samples.jsonl"])
    assert (
        judged.passed and judged.details["ingress_attribution"]["requests_by_color"].get(UNATTRIBUTED, 0) == 0
    )


def test_a_healthy_pair_is_attributed_without_failures(healthy_pair: Ingress, tmp_path: Path) -> None:
    rows = _load(healthy_pair, tmp_path)
    assert rows and all(r["ok"] for r in rows)
    assert {r["color"] for r in rows} == {"blue", "green"}
    judged = judge_attribution(Verdict("canary", Status.PASS, "ok"), [tmp_path / "samples.jsonl"])
    assert judged.status is Status.PASS


def test_requests_the_ingress_did_not_attribute_are_counted_and_fail(tmp_path: Path) -> None:
    """Nobody listening: every request fails before any proxy saw it. Counted, never dropped."""
    env = {**LOAD_ENV, **Attribution(servers={"blue-0": "blue"}).to_env()}
    run_load("http://127.0.0.1:9", TOKEN, tmp_path, "baseline", 3, _quiet, extra_env=env)
    counts = count_by_color([tmp_path / "samples.jsonl"])
    assert counts and set(counts) == {UNATTRIBUTED}
    judged = judge_attribution(Verdict("canary", Status.PASS, "canary fine"), [tmp_path / "samples.jsonl"])
    assert judged.status is Status.FAIL
    assert "not attributed by the ingress" in judged.summary


def test_a_few_unattributed_requests_within_the_bound_pass(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    rows = [{"color": "green", "latency_ms": 1, "ok": True, "at": 0}] * 1999
    rows.append({"color": UNATTRIBUTED, "latency_ms": 1, "ok": False, "at": 0})
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert judge_attribution(Verdict("c", Status.PASS, "ok"), [samples]).status is Status.PASS
    samples.write_text(samples.read_text() + json.dumps(rows[-1]) + "\n" + json.dumps(rows[-1]) + "\n")
    assert judge_attribution(Verdict("c", Status.PASS, "ok"), [samples]).status is Status.FAIL


def test_attribution_reads_only_the_ingress_header() -> None:
    rule = Attribution(servers={"blue-0": "blue", "green-0": "green", "baseline-0": "baseline"})
    assert rule.color_of({"X-Immune-Served-By": "ingress/green-0", "X-Immune-Color": "blue"}) == "green"
    assert rule.color_of({"X-Immune-Served-By": "baseline/baseline-0"}) == "baseline"
    assert rule.color_of({"X-Immune-Color": "green"}) == UNATTRIBUTED  # the service's word is not enough
    assert rule.color_of({"X-Immune-Served-By": "ingress/<NOSRV>"}) == UNATTRIBUTED
    assert rule.color_of({"X-Immune-Served-By": "ingress/intruder-0"}) == UNATTRIBUTED
    with pytest.raises(ValueError):
        Attribution.from_dict({"header": "X", "servers": {}})


# -- smoke and post-check right after a switch ----------------------------------------------------------


@pytest.fixture
def switch_pair() -> Iterator[Ingress]:
    """Blue runs the old release, green the new one; blue is active (stable) to begin with."""
    behaviours = {
        "blue-0": Behaviour("blue", STABLE.version),
        "green-0": Behaviour("green", CANDIDATE.version),
    }
    yield from started(behaviours, TrafficState(Color.BLUE, 0))


def test_post_check_fails_when_the_switch_left_the_old_colour_serving(switch_pair: Ingress) -> None:
    stable_url = switch_pair.url(switch_pair.layout.ports.stable_port)
    rule = attribution(switch_pair.layout)
    # The switch "happened" in the pipeline's mind, but the proxy still sends stable to blue.
    verdict = post_promotion_check(
        stable_url, Color.GREEN, CANDIDATE, 5, _quiet, attribution=rule, timeout_s=2
    )
    assert verdict.status is Status.FAIL
    assert "never served green/2.0.0" in verdict.summary and "blue/1.0.0" in verdict.summary
    # Now really switched: the same check passes.
    switch_pair.haproxy.apply(TrafficState(Color.GREEN, 0))
    verdict = post_promotion_check(
        stable_url, Color.GREEN, CANDIDATE, 5, _quiet, attribution=rule, timeout_s=5
    )
    assert verdict.status is Status.PASS, verdict.summary


def test_smoke_fails_when_preview_still_reaches_the_old_colour(switch_pair: Ingress) -> None:
    preview_url = switch_pair.url(switch_pair.layout.ports.preview_port)
    rule = attribution(switch_pair.layout)
    # Preview reaches green (the idle colour): expecting the new release on blue must fail.
    verdict = smoke_test(preview_url, TOKEN, Color.BLUE, CANDIDATE, 2, _quiet, attribution=rule)
    assert verdict.status is Status.FAIL
    assert "never answered" in verdict.summary
    verdict = smoke_test(preview_url, TOKEN, Color.GREEN, CANDIDATE, 5, _quiet, attribution=rule)
    assert verdict.status is Status.PASS, verdict.summary


def test_smoke_trusts_the_ingress_not_a_colour_header_the_old_release_sends() -> None:
    """Old blue instances that claim to be green (misconfigured) are still blue to the ingress."""
    behaviours = {
        "blue-0": Behaviour("green", CANDIDATE.version),
        "green-0": Behaviour("green", CANDIDATE.version),
    }
    for ingress in started(behaviours, TrafficState(Color.BLUE, 0)):
        stable_url = ingress.url(ingress.layout.ports.stable_port)
        rule = attribution(ingress.layout)
        verdict = post_promotion_check(
            stable_url, Color.GREEN, CANDIDATE, 3, _quiet, attribution=rule, timeout_s=2
        )
        assert verdict.status is Status.FAIL
        # Without the ingress's view, the lie would pass: this is what attribution prevents.
        assert post_promotion_check(stable_url, Color.GREEN, CANDIDATE, 3, _quiet, timeout_s=2).passed
