"""Threat levels and the score that drives them (pure functions, tested directly).

score = sum over threats stored in the window of weight(severity) * confidence * 0.5 ** (age / half_life)

Levels rise as soon as the score crosses a threshold and fall only once it is below 75 % of it
(hysteresis), so a score hovering at a threshold does not flap the hormone.
"""

from __future__ import annotations

from collections.abc import Iterable

LEVEL_NAMES: tuple[str, ...] = ("baseline", "elevated", "high", "critical")
BASELINE = 0
# Score at which each level (1, 2, 3) begins.
THRESHOLDS: tuple[float, ...] = (2.0, 8.0, 24.0)
SEVERITY_WEIGHT: dict[int, float] = {0: 1.0, 1: 2.0, 2: 4.0, 3: 8.0}
_HYSTERESIS = 0.75


def threat_score(threats: Iterable[tuple[float, int, float]], now: float, half_life_s: float) -> float:
    """``threats`` are (stored_at, severity_rank, confidence)."""
    score = 0.0
    for stored_at, rank, confidence in threats:
        age = max(0.0, now - stored_at)
        score += SEVERITY_WEIGHT.get(rank, 1.0) * confidence * 0.5 ** (age / half_life_s)
    return score


def level_for(score: float, current: int) -> int:
    rising = sum(1 for threshold in THRESHOLDS if score >= threshold)
    if rising >= current:
        return rising
    # Falling: drop only while below the hysteresis band of the current level's threshold.
    level = current
    while level > BASELINE and score < THRESHOLDS[level - 1] * _HYSTERESIS:
        level -= 1
    return level


def level_name(level: int) -> str:
    return LEVEL_NAMES[level]


def parse_level(value: int | str) -> int:
    if isinstance(value, int):
        if 0 <= value < len(LEVEL_NAMES):
            return value
    elif value in LEVEL_NAMES:
        return LEVEL_NAMES.index(value)
    raise ValueError(f"level must be 0-{len(LEVEL_NAMES) - 1} or one of {', '.join(LEVEL_NAMES)}")
