"""Pure pieces: threat-level arithmetic, token bucket, token comparison, fan-out back-pressure, regions."""

from __future__ import annotations

import asyncio

import pytest
from immune_core import __version__
from immune_core.api.errors import ApiError
from immune_core.api.security import TokenBucketLimiter, authenticate
from immune_core.api.tokens import TokenRegistry
from immune_core.homeostasis.levels import THRESHOLDS, level_for, parse_level, threat_score
from immune_core.lymphnodes.regions import region_of
from immune_core.observability.logging import redact_text
from immune_core.observability.metrics import Metrics
from immune_core.settings import Settings
from immune_core.stream.hub import StreamFilter, StreamHub


def test_score_decays_with_half_life_and_weights_severity() -> None:
    now = 1000.0
    assert threat_score([(now, 3, 1.0)], now, 30.0) == pytest.approx(8.0)
    assert threat_score([(now - 30, 3, 1.0)], now, 30.0) == pytest.approx(4.0)
    assert threat_score([(now, 0, 0.5)], now, 30.0) == pytest.approx(0.5)


def test_level_rises_at_thresholds_and_falls_with_hysteresis() -> None:
    assert level_for(0.0, 0) == 0
    assert level_for(THRESHOLDS[0], 0) == 1
    assert level_for(THRESHOLDS[2], 0) == 3
    # Just below the threshold: stays up (hysteresis band), well below: comes down step by step.
    assert level_for(THRESHOLDS[0] * 0.9, 1) == 1
    assert level_for(THRESHOLDS[0] * 0.5, 1) == 0
    assert level_for(0.0, 3) == 0


def test_parse_level_accepts_names_and_numbers_only_in_range() -> None:
    assert parse_level("high") == 2 and parse_level(1) == 1
    for bad in (4, -1, "extreme"):
        with pytest.raises(ValueError):
            parse_level(bad)


def test_token_bucket_allows_burst_then_refills() -> None:
    limiter = TokenBucketLimiter(rate=2.0, burst=2)
    assert limiter.acquire("k", now=0.0) == 0.0
    assert limiter.acquire("k", now=0.0) == 0.0
    wait = limiter.acquire("k", now=0.0)
    assert wait == pytest.approx(0.5)
    assert limiter.acquire("k", now=0.6) == 0.0
    assert TokenBucketLimiter(rate=0.0, burst=1).acquire("k") == 0.0


def test_authentication_distinguishes_missing_from_wrong_tokens() -> None:
    def registry(*tokens: str) -> TokenRegistry:
        return TokenRegistry.parse(tokens, frozenset({"read"}))

    assert registry("a", "b").roles_of("b") == {"read"} and registry("a", "b").roles_of("c") is None
    with pytest.raises(ApiError) as missing:
        authenticate(None, registry("a"))
    assert missing.value.status == 401
    with pytest.raises(ApiError) as wrong:
        authenticate("x", registry("a"))
    assert wrong.value.status == 403
    with pytest.raises(ApiError) as unconfigured:
        authenticate("a", registry())
    assert unconfigured.value.status == 403
    assert authenticate("a", registry("a")).fingerprint != "a"


async def test_slow_subscriber_is_dropped_without_blocking_the_publisher() -> None:
    metrics = Metrics()
    hub = StreamHub(metrics, queue_size=3)
    slow = hub.subscribe(StreamFilter())
    fast = hub.subscribe(StreamFilter())
    for n in range(10):
        hub.publish({"type": "alert", "data": {"n": n}})
        while not fast.queue.empty():  # the fast client keeps up
            fast.queue.get_nowait()
    assert slow.dropped.is_set() and not fast.dropped.is_set()
    assert hub.subscriber_count == 1
    assert metrics.ws_dropped._value.get() == 1
    await asyncio.sleep(0)


def test_stream_filter_matches_severity_category_and_antigen() -> None:
    threat = {"type": "threat", "data": {"severity": "high", "category": "port_scan", "antigen": "1.2.3.4"}}
    assert StreamFilter().matches(threat)
    assert StreamFilter(min_severity="high").matches(threat)
    assert not StreamFilter(min_severity="critical").matches(threat)
    assert not StreamFilter(categories=frozenset({"beaconing"})).matches(threat)
    assert not StreamFilter(antigen="5.6.7.8").matches(threat)
    assert not StreamFilter(types=frozenset({"alert"})).matches(threat)


def test_regions_group_networks_and_host_roles() -> None:
    assert region_of("source_ip", "10.1.2.3") == "net:10.1.2.0/24"
    assert region_of("source_ip", "2001:db8::1") == "net:2001:db8::/64"
    assert region_of("host", "web-03") == "hosts:web"
    assert region_of("process", "srv-db-1/kworkerd", host_id="srv-db-1") == "hosts:srv-db"


def test_settings_parse_tokens_prefix_and_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMUNE_API_TOKENS", " tok-alpha-1 , tok-beta-2,,")
    monkeypatch.setenv("IMMUNE_API_PREFIX", "api/immune/")
    settings = Settings()
    assert settings.token_values() == ("tok-alpha-1", "tok-beta-2")
    assert settings.api_prefix == "/api/immune"
    assert settings.embedded
    assert "tok-alpha-1" not in repr(settings)
    monkeypatch.setenv("IMMUNE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    assert not Settings().embedded


def test_version_is_the_release_an_image_was_built_as(monkeypatch: pytest.MonkeyPatch) -> None:
    # app/Dockerfile sets IMMUNE_VERSION from its build argument: the release when built by
    # scripts/ci/build-image.sh, empty otherwise (then the package's own version, never "").
    monkeypatch.setenv("IMMUNE_VERSION", "")
    assert Settings().version == __version__
    monkeypatch.setenv("IMMUNE_VERSION", "release-42")
    assert Settings().version == "release-42"


def test_log_redaction_hides_url_passwords() -> None:
    assert (
        redact_text("postgresql://immune:s3cret@db:5432/immune") == "postgresql://immune:***@db:5432/immune"
    )
    assert redact_text("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"


def test_cytokine_tally_drops_expired_cytokines_and_expires_live_ones() -> None:
    from datetime import UTC, datetime, timedelta

    from immune_core.cells.cytokine import Cytokine
    from immune_core.lymphnodes.cytokines import CytokineTally

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    tally = CytokineTally(Metrics())
    fresh = Cytokine.emit("il8", "neutrophil-1", "source_ip", "10.0.0.9", now, ttl_s=60)
    stale = Cytokine.emit(
        "tnf", "macrophage-1", "source_ip", "10.0.0.9", now - timedelta(seconds=400), ttl_s=300
    )
    assert tally.add(fresh, now.timestamp() + 1)
    assert not tally.add(stale, now.timestamp() + 1)
    assert tally.snapshot(now.timestamp() + 1) == {"net:10.0.0.0/24": {"il8": 1}}
    assert tally.snapshot(now.timestamp() + 61) == {}
