"""A canary step's metric checks (immune_suite/metrics/), beside the load generator's samples.

With a stack's `metrics:` set, a step passes only when its sample analysis passes AND the metric
provider's checks pass on the candidate's release over the step's whole span (extensions included).
The metric verdict is kept in the step verdict's `details["metrics"]`, its measurements (prefixed
`metrics.`) among the step's: the decision record says what both sources saw.

A step already failed by its samples is not queried (its rollback must not wait on Prometheus); a
target that cannot name a colour's series, an unreachable provider, no data or stale data fail it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from immune_suite.metrics.checks import GATE, ColorSelectors, judge_color
from immune_suite.metrics.factory import provider_for
from immune_suite.metrics.provider import MetricProvider
from immune_suite.stack_config import MetricsConfig
from immune_suite.targets.base import Color, Release, TargetError
from immune_suite.verdict import Measurement, Status, Verdict


def judge_step_metrics(
    target: Any,
    config: MetricsConfig,
    candidate: Color,
    release: Release,
    start: float,
    end: float,
    provider: MetricProvider | None = None,
) -> Verdict:
    """The metric checks of the candidate over [start, end] (Unix s) on `target`.

    `target` must offer `metric_selectors(color, release) -> ColorSelectors` (the local and Kubernetes
    targets do); one that does not fails the check: no selectors, no data. Without `metrics.url`, a
    target offering `metrics_url()` names its own Prometheus (Kubernetes: the stack's); a target
    that cannot say where it is fails the check too.
    """
    name = getattr(target, "name", "?")
    selectors_of = getattr(target, "metric_selectors", None)
    if selectors_of is None:
        return _no_data(f"no metric data: the {name} target names no series for a colour")
    url_of = getattr(target, "metrics_url", None)
    try:
        selectors: ColorSelectors = selectors_of(candidate, release)
        if provider is None:
            provider = provider_for(config, None if config.url or url_of is None else url_of())
    except TargetError as error:
        return _no_data(f"no metric data: the {name} target cannot name its metrics: {error}")
    return judge_color(provider, selectors, config, start, end)


def _no_data(summary: str) -> Verdict:
    return Verdict(GATE, Status.FAIL, summary, details={"error": summary})


def with_metrics(step: Verdict, metrics: Verdict | None) -> Verdict:
    """The step verdict with the metric verdict folded in (None: not judged, the step had failed)."""
    if metrics is None:
        details = {**step.details, "metrics": {"judged": False, "reason": "the step failed on its samples"}}
        return replace(step, details=details)
    measurements = [
        Measurement(f"metrics.{m.name}", m.value, m.threshold, m.comparator, m.passed, m.unit)
        for m in metrics.measurements
    ]
    details = {**step.details, "metrics": {"judged": True, **metrics.to_dict()}}
    if metrics.passed:
        return replace(step, measurements=[*step.measurements, *measurements], details=details)
    return replace(
        step,
        status=Status.FAIL,
        summary=f"{step.summary}; {metrics.summary}",
        measurements=[*step.measurements, *measurements],
        details={**details, "outcome": "fail", "decided_by": "metric checks"},
    )
