"""The cyclic garbage collector of a serving process: its pauses as a metric, and its tuning.

Why: profiling ``POST /api/v1/events`` under open-loop load (docs/performance.md) showed the HTTP tail
is made by the collector, not by the request's own work. CPython 3.11 collects generation 2 when the
objects promoted since the last full collection exceed 25 % of the long-lived ones; a full collection
traverses every tracked object, and a booted service holds ~135,000 (modules, FastAPI/pydantic
schemas, the detection engine's state), so each one stopped the event loop for 100-900 ms on the
shared bench machine. Under load, in-flight requests survive the young collections (threshold 700
allocations, i.e. every few requests) and are promoted, which keeps triggering full collections.

The fix, per the CPython ``gc`` documentation (``gc.freeze``: "move all objects tracked by the
garbage collector into a permanent generation [...] ignored by all the future collections"):
after boot, collect once and freeze the boot heap, so a full collection only traverses what was
allocated since; and raise the generation-0 threshold so that a request's short-lived objects die
before a young collection sees them instead of being promoted.

Sources: https://docs.python.org/3.11/library/gc.html (freeze, set_threshold, callbacks);
CPython ``Modules/gcmodule.c`` (the 25 % long-lived rule for generation 2).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

# Seconds; pauses span 0.1 ms (a young collection) to seconds (a full one on an overloaded host).
_PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GcPauses:
    """Records every collection's duration (seconds) in ``immune_gc_pause_seconds{generation}``.

    Installed as a ``gc.callbacks`` entry (two ``perf_counter`` calls per collection); ``uninstall``
    removes it, so several services built in one process (tests) do not accumulate callbacks.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "immune_gc_pause_seconds",
            "Duration of each cyclic garbage collection (the event loop is stopped meanwhile)",
            ["generation"],
            buckets=_PAUSE_BUCKETS,
            registry=registry,
        )
        self._children = [self.histogram.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self._children[int(info["generation"])].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        self._started = 0.0


def freeze_boot_heap(gen0_threshold: int) -> int:
    """Collect, move every surviving object to the permanent generation, set the young threshold.

    For the process that owns the interpreter (``immune-core serve``), once booted: frozen objects are
    never collected, so a library that frees a cycle of them leaks it (bounded: the boot heap).
    ``gen0_threshold``: allocations (net of frees) between young collections, at least 1; a
    ``ValueError`` otherwise. Returns the number of frozen objects.
    """
    if gen0_threshold < 1:
        raise ValueError(f"gen0_threshold must be at least 1, got {gen0_threshold}")
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    return gc.get_freeze_count()
