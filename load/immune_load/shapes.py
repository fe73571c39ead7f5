"""Load shapes for the original notes' scenarios, expressed as request rates (pure: no locust import,
so the planning can be tested without gevent's monkey patching; the locustfile's shape calls `tick`).

Locust shapes control users, not requests per second, so every HTTP user runs with
`constant_throughput(user_rps)` and a target rate becomes `ceil(rate / user_rps)` users (plus the fixed
WebSocket subscribers). The locustfile's options choose the scenario (each also read from the
environment, see `load/locustfile.py`):

- `--load-shape` / `IMMUNE_LOAD_SHAPE`: baseline | peak | stress | spike | soak (default baseline)
- `--load-duration` / `IMMUNE_LOAD_DURATION_S`: total duration (defaults per shape below; set soak's)
- `--rps-scale` / `IMMUNE_LOAD_RPS_SCALE`: multiplies every target rate (CI runs the same shapes smaller)
- `--user-rps` / `IMMUNE_LOAD_USER_RPS`: requests per second of one HTTP user (default 5)
- `--ws-subscribers` / `IMMUNE_LOAD_WS_SUBSCRIBERS`: WebSocket subscribers kept open (default 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """Reach `rps` by `until_s` (ramping from the previous stage's rate), k6 `stages` style."""

    until_s: float
    rps: float


@dataclass(frozen=True)
class ShapeSettings:
    name: str
    duration_s: float
    rps_scale: float
    user_rps: float
    ws_subscribers: int

    @classmethod
    def of(
        cls,
        name: str,
        duration_s: float | None = None,
        rps_scale: float = 1.0,
        user_rps: float = 5.0,
        ws_subscribers: int = 2,
    ) -> ShapeSettings:
        name = name.strip().lower()
        if name not in SCENARIOS:
            raise ValueError(f"load shape {name!r}; choose one of {sorted(SCENARIOS)}")
        if rps_scale <= 0 or user_rps <= 0 or ws_subscribers < 0:
            raise ValueError("rps scale and user rps must be positive, ws subscribers not negative")
        return cls(name, float(duration_s or DEFAULT_DURATION_S[name]), rps_scale, user_rps, ws_subscribers)


def baseline(duration_s: float) -> list[Stage]:
    ramp = min(10.0, duration_s / 5)
    return [Stage(ramp, 100), Stage(duration_s, 100)]


def peak(duration_s: float) -> list[Stage]:
    ramp = min(15.0, duration_s / 4)
    return [Stage(ramp, 500), Stage(duration_s, 500)]


def stress(duration_s: float) -> list[Stage]:
    """Four equal steps up to 1000 RPS, each ramped in its first fifth, to find where latency bends."""
    step = duration_s / 4
    stages: list[Stage] = []
    for i, rps in enumerate((250, 500, 750, 1000)):
        stages += [Stage(i * step + step / 5, rps), Stage((i + 1) * step, rps)]
    return stages


def spike(duration_s: float) -> list[Stage]:
    """From nothing to 1000 RPS in 10 s, held for the rest of the run."""
    ramp = min(10.0, duration_s / 2)
    return [Stage(ramp, 1000), Stage(duration_s, 1000)]


def soak(duration_s: float) -> list[Stage]:
    return [Stage(min(30.0, duration_s / 10), 100), Stage(duration_s, 100)]


SCENARIOS = {"baseline": baseline, "peak": peak, "stress": stress, "spike": spike, "soak": soak}
DEFAULT_DURATION_S = {"baseline": 60.0, "peak": 60.0, "stress": 120.0, "spike": 40.0, "soak": 1800.0}


def target_rps(stages: list[Stage], at_s: float) -> float | None:
    """The planned rate at `at_s` (linear ramps between stages); None once the shape is over."""
    previous_t, previous_rps = 0.0, 0.0
    for stage in stages:
        if at_s < stage.until_s:
            span = stage.until_s - previous_t
            progress = (at_s - previous_t) / span if span > 0 else 1.0
            return previous_rps + (stage.rps - previous_rps) * progress
        previous_t, previous_rps = stage.until_s, stage.rps
    return None


def users_for(settings: ShapeSettings, rps: float) -> int:
    """Users that produce `rps` (scaled) at `user_rps` each, plus the WebSocket subscribers."""
    http_users = math.ceil(rps * settings.rps_scale / settings.user_rps) if rps > 0 else 0
    return max(1, http_users) + settings.ws_subscribers


def tick(settings: ShapeSettings, at_s: float) -> tuple[int, float] | None:
    """What a locust LoadTestShape returns at `at_s`: (users, spawn rate), or None when the run is over."""
    rps = target_rps(SCENARIOS[settings.name](settings.duration_s), at_s)
    if rps is None:
        return None
    users = users_for(settings, rps)
    # Spawn fast enough to follow the ramp within a second.
    return users, float(users)
