"""bench/memory_soak.py's pure logic: the soak shape's send plan and the RSS growth summary (no service,
no timing: the bench itself prints figures, it is not a test)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from immune_suite.paths import REPO_ROOT


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    path = REPO_ROOT / "bench" / "memory_soak.py"
    spec = importlib.util.spec_from_file_location("bench_memory_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    yield module
    sys.modules.pop(spec.name, None)


def test_the_plan_follows_the_soak_shape_scaled_to_the_rate(soak: ModuleType) -> None:
    stages = soak.scaled_soak(600.0, 50.0)
    assert [(s.until_s, s.rps) for s in stages] == [(30.0, 50.0), (600.0, 50.0)]
    times = soak.send_times(stages)
    # A 30 s ramp from 0 to 50/s (750 requests), then 570 s at 50/s.
    assert len(times) == 750 + 570 * 50
    assert times == sorted(times) and 0 < times[0] and times[-1] == pytest.approx(600.0)
    assert times[749] == pytest.approx(30.0)
    assert times[750] - times[749] == pytest.approx(1 / 50)


def _sample(soak: ModuleType, t_s: float, rss_mb: float) -> object:
    return soak.Sample(t_s=t_s, rss_mb=rss_mb, processes=1, sent=0, errors=0)


def test_growth_counts_from_the_first_sample_after_warm_up(soak: ModuleType) -> None:
    samples = [_sample(soak, t, rss) for t, rss in ((0, 50.0), (300, 100.0), (1950, 104.0), (3600, 108.0))]
    summary = soak.summarize(samples, warmup_s=300)
    assert summary.rss_after_warmup_mb == 100.0 and summary.rss_end_mb == 108.0
    assert summary.growth_pct == pytest.approx(8.0) and summary.passed
    assert summary.slope_mb_per_h == pytest.approx(8.0 * 3600 / 3300)  # 8 MB over 3300 s
    assert summary.samples_after_warmup == 3


def test_growth_at_the_target_fails(soak: ModuleType) -> None:
    samples = [_sample(soak, t, rss) for t, rss in ((0, 100.0), (3600, 110.0))]
    assert not soak.summarize(samples, warmup_s=0).passed


@pytest.mark.parametrize("times", [(), (0,), (0, 100), (400,)])
def test_no_figure_without_two_samples_after_warm_up(soak: ModuleType, times: tuple[float, ...]) -> None:
    assert soak.summarize([_sample(soak, t, 100.0) for t in times], warmup_s=300) is None
