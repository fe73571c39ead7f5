"""SLO thresholds in k6's syntax, parsed once and evaluated against any source of metrics.

The file format is k6's `options.thresholds` written as YAML: a metric (optionally with tag filters,
`http_req_duration{name:/api/v1/events}`) maps to a list of expressions (`"p(95)<200"`) or objects
(`{threshold: "rate<0.001", abortOnFail: true, delayAbortEval: "10s"}`). Evaluation goes through the
small `MetricSource` protocol so locust's live statistics (for abort-on-fail during the run) and
recorded samples (per deployment colour, after the run) answer the same thresholds.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from immune_suite.verdict import Measurement

# Which aggregations each metric answers, as in k6's metric types (Trend, Rate, Counter).
METRIC_AGGREGATIONS: dict[str, tuple[str, ...]] = {
    "http_req_duration": ("avg", "min", "max", "med", "p"),
    "http_req_failed": ("rate",),
    "http_reqs": ("count", "rate"),
}
METRIC_UNITS = {"http_req_duration": "ms", "http_req_failed": "ratio", "http_reqs": ""}

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
_EXPRESSION = re.compile(
    r"^\s*(?P<agg>avg|min|max|med|count|rate|p\(\s*(?P<pct>\d+(?:\.\d+)?)\s*\))"
    r"\s*(?P<op><=|>=|===|==|<|>)\s*(?P<limit>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$"
)
_METRIC_KEY = re.compile(r"^\s*(?P<metric>[a-z_]+)\s*(?:\{(?P<tags>[^}]*)\})?\s*$")
_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ThresholdError(ValueError):
    """A threshold file or expression that does not follow k6's syntax."""


@dataclass(frozen=True)
class Threshold:
    metric: str
    aggregation: str  # avg, min, max, med, count, rate, or p(N)
    comparator: str
    limit: float
    tags: tuple[tuple[str, str], ...] = ()
    abort_on_fail: bool = False
    delay_abort_eval_s: float = 0.0
    expression: str = ""

    @property
    def percentile(self) -> float | None:
        if not self.aggregation.startswith("p("):
            return None
        return float(self.aggregation[2:-1])

    @property
    def name(self) -> str:
        tags = ",".join(f"{k}:{v}" for k, v in self.tags)
        metric = f"{self.metric}{{{tags}}}" if tags else self.metric
        return f"{metric} {self.aggregation}"

    def holds_for(self, value: float) -> bool:
        return _OPERATORS[self.comparator](value, self.limit)


@dataclass(frozen=True)
class ThresholdResult:
    threshold: Threshold
    value: float | None  # None: no data, which fails (a canary nobody called proves nothing)

    @property
    def passed(self) -> bool:
        return self.value is not None and math.isfinite(self.value) and self.threshold.holds_for(self.value)

    def to_measurement(self, prefix: str = "") -> Measurement:
        t = self.threshold
        return Measurement(
            name=f"{prefix}{t.name}",
            value=self.value,
            threshold=t.limit,
            comparator=t.comparator,
            passed=self.passed,
            unit=METRIC_UNITS.get(t.metric, ""),
            abort_on_fail=t.abort_on_fail,
        )

    def to_dict(self) -> dict[str, Any]:
        t = self.threshold
        return {
            "name": t.name,
            "expression": t.expression,
            "value": self.value,
            "passed": self.passed,
            "comparator": t.comparator,
            "limit": t.limit,
            "unit": METRIC_UNITS.get(t.metric, ""),
            "abort_on_fail": t.abort_on_fail,
        }


class MetricSource(Protocol):
    def value(self, metric: str, aggregation: str, tags: Mapping[str, str]) -> float | None:
        """The aggregated value, or None when nothing was measured."""
        ...


def parse_duration_s(text: str | float | int) -> float:
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ThresholdError(f"not a duration: {text!r} (expected e.g. '10s', '500ms', '1m')")
    return float(match["n"]) * _UNIT_SECONDS[match["unit"] or "s"]


def parse_expression(
    metric_key: str, expression: str, abort_on_fail: bool = False, delay_abort_eval: str | float = 0.0
) -> Threshold:
    key = _METRIC_KEY.match(metric_key)
    if not key:
        raise ThresholdError(f"not a metric name: {metric_key!r}")
    metric = key["metric"]
    if metric not in METRIC_AGGREGATIONS:
        raise ThresholdError(f"unknown metric {metric!r}; known: {sorted(METRIC_AGGREGATIONS)}")
    tags = _parse_tags(key["tags"] or "")
    match = _EXPRESSION.match(expression)
    if not match:
        raise ThresholdError(f"{metric}: cannot parse threshold {expression!r} (k6 syntax, e.g. 'p(95)<200')")
    aggregation = match["agg"].replace(" ", "")
    family = "p" if match["pct"] is not None else aggregation
    if family not in METRIC_AGGREGATIONS[metric]:
        raise ThresholdError(f"{metric} has no aggregation {aggregation!r}")
    if match["pct"] is not None:
        pct = float(match["pct"])
        if not 0 < pct <= 100:
            raise ThresholdError(f"{metric}: percentile out of range in {expression!r}")
        aggregation = f"p({match['pct']})"
    comparator = "==" if match["op"] == "===" else match["op"]
    return Threshold(
        metric=metric,
        aggregation=aggregation,
        comparator=comparator,
        limit=float(match["limit"]),
        tags=tags,
        abort_on_fail=abort_on_fail,
        delay_abort_eval_s=parse_duration_s(delay_abort_eval),
        expression=expression.strip(),
    )


def parse_thresholds(document: Mapping[str, Any]) -> list[Threshold]:
    """Parse a k6 `thresholds` mapping (the document itself, or one with a `thresholds` key)."""
    spec = document.get("thresholds", document)
    if not isinstance(spec, Mapping) or not spec:
        raise ThresholdError("thresholds must be a non-empty mapping of metric -> list of expressions")
    parsed: list[Threshold] = []
    for metric_key, entries in spec.items():
        if isinstance(entries, str | Mapping):
            entries = [entries]
        if not isinstance(entries, Sequence):
            raise ThresholdError(f"{metric_key}: expected a list of thresholds")
        for entry in entries:
            if isinstance(entry, str):
                parsed.append(parse_expression(metric_key, entry))
            elif isinstance(entry, Mapping) and "threshold" in entry:
                unknown = set(entry) - {"threshold", "abortOnFail", "delayAbortEval"}
                if unknown:
                    raise ThresholdError(f"{metric_key}: unknown threshold keys {sorted(unknown)}")
                parsed.append(
                    parse_expression(
                        metric_key,
                        str(entry["threshold"]),
                        bool(entry.get("abortOnFail", False)),
                        entry.get("delayAbortEval", 0.0),
                    )
                )
            else:
                raise ThresholdError(f"{metric_key}: each threshold is a string or {{threshold: ...}}")
    return parsed


def load_thresholds(path: Path) -> list[Threshold]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, Mapping):
        raise ThresholdError(f"{path}: expected a mapping")
    return parse_thresholds(document)


def evaluate(thresholds: Sequence[Threshold], source: MetricSource) -> list[ThresholdResult]:
    return [ThresholdResult(t, source.value(t.metric, t.aggregation, dict(t.tags))) for t in thresholds]


def broken_aborts(
    thresholds: Sequence[Threshold], source: MetricSource, elapsed_s: float
) -> list[ThresholdResult]:
    """Abort-on-fail thresholds that break now; each waits out its delayAbortEval first.

    Missing data does not abort (the run may simply not have reached that endpoint yet); it fails
    at the end instead.
    """
    due = [t for t in thresholds if t.abort_on_fail and elapsed_s >= t.delay_abort_eval_s]
    return [r for r in evaluate(due, source) if r.value is not None and not r.passed]


@dataclass
class SampleMetrics:
    """A `MetricSource` over recorded request samples (one deployment colour, one time window)."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    window_s: float = 0.0

    @classmethod
    def of(cls, samples: Sequence[tuple[float, bool, float]]) -> SampleMetrics:
        """From (latency_ms, ok, at) triples."""
        if not samples:
            return cls()
        times = [at for _, _, at in samples]
        return cls(
            latencies_ms=sorted(lat for lat, _, _ in samples),
            failures=sum(1 for _, ok, _ in samples if not ok),
            window_s=max(times) - min(times),
        )

    def value(self, metric: str, aggregation: str, tags: Mapping[str, str]) -> float | None:
        if tags:
            return None  # samples carry no tags; a tagged threshold has no data here
        count = len(self.latencies_ms)
        if count == 0:
            return None
        if metric == "http_reqs":
            if aggregation == "count":
                return float(count)
            return count / self.window_s if self.window_s > 0 else None
        if metric == "http_req_failed":
            return self.failures / count
        lat = self.latencies_ms
        if aggregation == "avg":
            return sum(lat) / count
        if aggregation == "min":
            return lat[0]
        if aggregation == "max":
            return lat[-1]
        pct = 50.0 if aggregation == "med" else float(aggregation[2:-1])
        return percentile(lat, pct)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (as locust reports it): the smallest value with pct% at or below it."""
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _parse_tags(text: str) -> tuple[tuple[str, str], ...]:
    tags: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition(":")
        if not sep or not name.strip():
            raise ThresholdError(f"bad tag filter {part!r} (expected name:value)")
        if name.strip() not in ("name", "method"):
            raise ThresholdError(f"unsupported tag {name.strip()!r}; use name or method")
        tags.append((name.strip(), value.strip()))
    return tuple(tags)
