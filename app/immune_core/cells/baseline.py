"""Online statistics the NK cell learns per host (no cell type here: helpers for cell modules)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Ewma:
    """Exponentially weighted mean and variance (West 1979 / Finch 2009 incremental form).

    With smoothing ``alpha`` the statistics weigh the last ~``2/alpha`` observations most, so a baseline
    follows slow drift (a host's workload changing over days) while one outlier barely moves it.
    """

    alpha: float
    mean: float = 0.0
    variance: float = 0.0
    count: int = 0

    def update(self, value: float) -> None:
        if self.count == 0:
            self.mean = value
            self.variance = 0.0
        else:
            diff = value - self.mean
            increment = self.alpha * diff
            self.mean += increment
            self.variance = (1.0 - self.alpha) * (self.variance + diff * increment)
        self.count += 1

    def zscore(self, value: float, min_std: float) -> float:
        """Standard score of ``value``; the std floor keeps a near-constant baseline from over-reacting."""
        return (value - self.mean) / max(math.sqrt(self.variance), min_std)


def log_bytes(value: int) -> float:
    """Byte counts are heavy-tailed (log-normal in practice), so baselines work on log(1 + bytes)."""
    return math.log1p(value)


def coefficient_of_variation(values: list[float]) -> tuple[float, float]:
    """(mean, standard deviation / mean) of ``values``; CV is infinite for a zero mean."""
    mean = sum(values) / len(values)
    if mean <= 0:
        return mean, math.inf
    variance = sum((value - mean) ** 2 for value in values) / len(values)
    return mean, math.sqrt(variance) / mean
