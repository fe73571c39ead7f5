"""Is the detection consumer making progress? (readiness, metrics and alerts read this)

A consumer that crash-loops or sits on a backlog without committing anything leaves events stored but
never processed while the rest of the service looks healthy; these states make that visible.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from immune_core.observability.metrics import Metrics

ConsumerState = Literal["starting", "ok", "stuck", "crash_looping"]


@dataclass
class ConsumerHealth:
    """Progress of one replica's detection consumer.

    * ``crash_looping``: at least ``crash_restarts`` restarts within ``crash_window_s`` seconds and no
      progress since the last one.
    * ``stuck``: messages are waiting (lag > 0) and no batch was committed for ``stall_after_s`` seconds.
    * ``starting``: not attached to its partitions yet (e.g. Kafka unreachable): not a consumer fault.
    Times are wall-clock epoch seconds.
    """

    metrics: Metrics
    stall_after_s: float = 120.0
    crash_restarts: int = 3
    crash_window_s: float = 300.0
    starts: int = 0
    last_progress_at: float = field(default_factory=time.time)
    lag: int = 0
    attached: bool = False
    _restarts: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    def __post_init__(self) -> None:
        # Start-up counts as progress: a stall is measured from here, not from the epoch.
        self.metrics.consumer_last_progress.set(self.last_progress_at)

    def started(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.starts += 1
        self.attached = False
        if self.starts > 1:
            self._restarts.append(now)
            self.metrics.consumer_restarts.inc()

    def progressed(self, now: float | None = None) -> None:
        """A batch was committed, or the consumer is idle with nothing to read."""
        self.last_progress_at = time.time() if now is None else now
        self.metrics.consumer_last_progress.set(self.last_progress_at)

    def observed_lag(self, lag: int, *, attached: bool) -> None:
        self.lag = lag
        self.attached = attached

    def state(self, now: float | None = None, *, bus_up: bool = True) -> ConsumerState:
        """``bus_up=False``: the broker is unreachable, so a backlog is not the consumer's fault."""
        now = time.time() if now is None else now
        recent = [t for t in self._restarts if now - t <= self.crash_window_s]
        # Crash-looping until it makes progress again: a loop that healed is not held against it.
        if len(recent) >= self.crash_restarts and self.last_progress_at < recent[-1]:
            return "crash_looping"
        if bus_up and self.lag > 0 and now - self.last_progress_at > self.stall_after_s:
            return "stuck"
        if not self.attached:
            return "starting"
        return "ok"
