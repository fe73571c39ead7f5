"""The load scenarios as planned request rates (load/immune_load/shapes.py)."""

from __future__ import annotations

import pytest
from immune_load import shapes


def test_the_notes_scenarios_reach_their_rates() -> None:
    assert shapes.target_rps(shapes.baseline(60), 30) == 100
    assert shapes.target_rps(shapes.peak(60), 30) == 500
    stress = shapes.stress(120)
    assert [shapes.target_rps(stress, t) for t in (20, 50, 80, 110)] == [250, 500, 750, 1000]
    spike = shapes.spike(40)
    assert shapes.target_rps(spike, 0) == 0
    assert shapes.target_rps(spike, 5) == pytest.approx(500)
    assert shapes.target_rps(spike, 10) == 1000
    assert shapes.target_rps(shapes.soak(7200), 7000) == 100


def test_a_shape_ends_at_its_duration() -> None:
    assert shapes.target_rps(shapes.baseline(60), 59.9) is not None
    assert shapes.target_rps(shapes.baseline(60), 60) is None


def test_settings_validate_and_default_per_scenario() -> None:
    assert shapes.ShapeSettings.of("soak").duration_s == shapes.DEFAULT_DURATION_S["soak"]
    assert shapes.ShapeSettings.of("Spike", 12).duration_s == 12
    with pytest.raises(ValueError):
        shapes.ShapeSettings.of("tsunami")
    with pytest.raises(ValueError):
        shapes.ShapeSettings.of("peak", rps_scale=0)


def test_rates_become_users() -> None:
    settings = shapes.ShapeSettings.of("stress", 120, rps_scale=0.5, user_rps=5, ws_subscribers=2)
    assert shapes.users_for(settings, 1000) == 100 + 2  # 1000 RPS x 0.5 at 5 RPS per user, + subscribers
    assert shapes.users_for(settings, 0) == 1 + 2
    assert shapes.tick(settings, 119) == (102, 102.0)
    assert shapes.tick(settings, 120) is None
