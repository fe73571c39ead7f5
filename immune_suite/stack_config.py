"""Per-stack pipeline configuration (`stacks/<name>.yaml`), validated into frozen models.

Unknown keys are errors: a typo in a threshold must not silently fall back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from immune_suite.paths import REPO_ROOT, STACKS_DIR

__all__ = ["REPO_ROOT", "STACKS_DIR"]  # older imports took the root from here; immune_suite.paths is the home


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SloConfig(_Strict):
    """Fixed SLOs every canary step must meet (defaults from the original design notes)."""

    p95_ms: float = 200.0
    p99_ms: float = 500.0
    error_ratio: float = 0.001


class ComparisonConfig(_Strict):
    """How a canary step is judged (immune_suite/analysis.py): each test, its level and its minimums.

    - `alpha`: the false-failure budget of one window (a step, or its extension) of a candidate that
      is as good as required: split evenly among the tests that can fail it (Bonferroni), each spent
      over the window's looks with a Lan-DeMets O'Brien-Fleming-type function (looking every second
      does not inflate it).
    - Latency against the reference (fresh baseline, else stable): a one-sided Mann-Whitney U test
      *and* an effect floor: the median grows by more than `max_median_increase_ratio` and by at least
      `min_effect_ms` (loopback latencies of a few ms would otherwise make tiny differences
      "significant"); the tail (p95) likewise, by a quantile test on the pooled p95 with the same floor.
    - `min_samples`: fewer canary (or reference) requests at the end of a window is NO DATA: a failure.
    - `p95_min_samples` / `p99_min_samples`: a tail SLO is judged only on at least this many successful
      canary requests (at least one expected beyond the percentile); with fewer it is inconclusive.
    - Errors are counts: the step passes on errors only once the canary's Clopper-Pearson upper bound
      (confidence 1 - `error_beta`) is below `error_detect_ratio` (the step could have caught a
      candidate failing that share of requests); against the reference, a canary fails when its
      error rate is significantly above `error_ratio_margin` times the reference's.
    """

    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    max_median_increase_ratio: float = Field(default=0.2, ge=0)
    min_effect_ms: float = Field(default=10.0, ge=0)
    min_samples: int = Field(default=20, ge=1)
    p95_min_samples: int = Field(default=20, ge=1)
    p99_min_samples: int = Field(default=100, ge=1)
    error_detect_ratio: float = Field(default=0.05, gt=0, lt=1)
    error_beta: float = Field(default=0.01, gt=0, lt=0.5)
    error_ratio_margin: float = Field(default=2.0, ge=1)


class InconclusiveConfig(_Strict):
    """What an inconclusive step (too little evidence either way) does at the end of its window.

    It is extended `extend_times` times, each extension by as many further windows of the step's
    length as the missing samples need at the rate seen so far (at most `max_windows`); what is still
    inconclusive after that is rolled back (`then: rollback`, the only safe answer to "we do not know").
    """

    extend_times: int = Field(default=1, ge=0, le=3)
    max_windows: int = Field(default=8, ge=1, le=32)
    then: Literal["rollback"] = "rollback"


class CanaryConfig(_Strict):
    steps: tuple[int, ...] = (10, 50, 100)
    load_shape: str = "baseline"
    step_duration_s: float = 10.0
    rps_scale: float = 1.0  # multiplies the shape's request rates (small machines, CI)
    # Canary (and fresh baseline) samples of each window's first `warmup_s` seconds are not judged:
    # a freshly started process is slower for a while whatever its code (JIT-less CPython still
    # warms caches, pools and imports); the fresh baseline has the same transient.
    warmup_s: float = Field(default=0.0, ge=0)
    inconclusive: InconclusiveConfig = InconclusiveConfig()

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError("canary steps must be strictly increasing percentages in (0, 100]")
        return steps


class ChaosConfig(_Strict):
    enabled: bool = True
    experiments: tuple[str, ...] = ()


class SecurityConfig(_Strict):
    enabled: bool = True
    fuzz_api: bool = True  # schemathesis against the deployed candidate on preview, before any traffic


class LocalTargetConfig(_Strict):
    """Ports of the local stack: ingress, stable, preview, then instance ports from `instance_base_port`."""

    ingress_port: int = 18080
    stable_port: int = 18081
    preview_port: int = 18082
    baseline_port: int | None = None  # baseline instances only; None: ingress_port + 3
    gateway_port: int | None = None  # the API gateway (/api/immune/*, /health); None: ingress_port + 4
    gateway_rate_limit_per_10s: int = Field(default=1000, ge=1)  # per client address, at the gateway
    instance_base_port: int = 18100
    # HAProxy's own Prometheus exporter (/metrics: per-server responses by class, connection errors);
    # None: not served. Stacks with `metrics:` set it so the router's view of each colour is scraped.
    router_metrics_port: int | None = None
    ready_timeout_s: float = 60.0


class MetricsConfig(_Strict):
    """The canary's server-side evidence: a metric provider queried per colour (immune_suite/metrics/).

    Flagger/Argo Rollouts style: each canary step also needs every check below to pass on the
    candidate's release, as the metrics system saw it during the step's window (the app's request
    histogram, the router's per-server responses). No data, stale data or an unreachable provider
    fails the step; it never passes it.

    - `url`: the Prometheus HTTP API base; None: the target's own when it names one (Kubernetes: the
      stack's bundled Prometheus at its Service's ClusterIP), else `IMMUNE_PROMETHEUS_URL`, else
      http://127.0.0.1:19090 (the shared service of scripts/services/prometheus.sh).
    - `timeout_s` / `attempts`: per HTTP request, and how many tries (tenacity, exponential backoff)
      before the provider counts as down.
    - `freshness_timeout_s`: how long to wait after a window for a scrape of every candidate target
      newer than the window's end; none by then is stale data: a failure.
    - `min_requests`: fewer candidate requests in the window (app or router) is no data: a failure.
    - `max_error_ratio`: 5xx / all requests of the candidate (app and router, each).
    - `latency_quantile` / `max_latency_ms`: the candidate's quantile from its latency histogram
      (histogram_quantile over the rate of `_bucket`) must stay at or below this.
    - `exclude_routes`: app route templates not judged (health probes and scrapes are not user
      traffic). Excluded rather than included: a request refused before routing (an injected fault,
      an unknown path) is recorded as route `unmatched` and must still count.
    """

    provider: Literal["prometheus"] = "prometheus"
    url: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=3, ge=1, le=10)
    freshness_timeout_s: float = Field(default=15.0, gt=0, le=300)
    min_requests: int = Field(default=20, ge=1)
    max_error_ratio: float = Field(default=0.05, ge=0, lt=1)
    latency_quantile: float = Field(default=0.99, gt=0, lt=1)
    max_latency_ms: float = Field(default=500.0, gt=0)
    exclude_routes: str = Field(default="(.*)/health/(live|ready)|(.*)/metrics", min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"metrics.url must be an http(s) URL, got {url!r}")
        return url.rstrip("/") if url else url

    @field_validator("exclude_routes")
    @classmethod
    def _regex(cls, pattern: str) -> str:
        # PromQL regexes are RE2, which Python's `re` accepts for everything a route filter needs.
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"metrics.exclude_routes {pattern!r} is not a regular expression: {error}"
            ) from error
        return pattern


class KubernetesConfig(_Strict):
    """How this machine reaches a Kubernetes stack.

    - `router_port`: the router's (Traefik's) port on 127.0.0.1, as on the local cluster
      (cluster/versions.env ROUTER_GATEWAY_PORT). Set, the target's stable/preview URLs get this port
      (the stack's host names must resolve to 127.0.0.1, e.g. /etc/hosts), and the baseline's
      cluster-internal URL is not offered (the host cannot reach a Service). None: the URLs as exported.
    - `router_metrics_url`: the router's Prometheus metrics page (Traefik; the local cluster's
      `http://<CNI_BRIDGE_IP>:<ROUTER_METRICS_PORT>/metrics`, cluster/versions.env). Set, each canary
      step records the router's own per-colour counters (requests, 5xx, its own 502/504, retries) over
      the step beside the samples; unreadable there fails the step. None: no router counters.
    """

    router_port: int | None = Field(default=None, ge=1, le=65535)
    router_metrics_url: HttpUrl | None = None


class StackConfig(_Strict):
    name: str
    target: Literal["local", "kubernetes"] = "local"
    dependencies: Literal["embedded", "services"] = "embedded"
    replicas: int = Field(default=2, ge=1, le=8)
    approval_required: bool = False
    slo: SloConfig = SloConfig()
    comparison: ComparisonConfig = ComparisonConfig()
    canary: CanaryConfig = CanaryConfig()
    chaos: ChaosConfig = ChaosConfig()
    security: SecurityConfig = SecurityConfig()
    smoke_timeout_s: float = 30.0
    post_check_requests: int = 20
    retire_delay_s: float = 5.0
    # How long the rollback step keeps retrying the target (exponential backoff) before the run ends
    # `rollback_failed`; the guard (or the Kubernetes retrying restore) carries on after that.
    rollback_retry_s: float = Field(default=30.0, ge=0)
    candidate_env: dict[str, str] = Field(default_factory=dict)
    local: LocalTargetConfig = LocalTargetConfig()
    # None: the canary judges the load generator's samples only; set, every step also needs the
    # metric provider's checks (Prometheus) to pass.
    metrics: MetricsConfig | None = None
    kubernetes: KubernetesConfig = KubernetesConfig()
    pulumi_stack: str | None = None  # Kubernetes stacks: the Pulumi stack whose exports name the URLs
    # Where the key that signs promotion records comes from (see immune_suite/signing.py): "configured"
    # (IMMUNE_SIGNING_KEY / IMMUNE_SIGNING_KEY_FILE, a CI secret, checked against the committed
    # stacks/keys/<name>.pub) or "generated" (once, into the state dir). None: configured for Kubernetes
    # stacks, whose records must verify on any machine, generated for local ones.
    signing_key: Literal["generated", "configured"] | None = None

    @property
    def signing_key_source(self) -> Literal["generated", "configured"]:
        if self.signing_key is not None:
            return self.signing_key
        return "configured" if self.target == "kubernetes" else "generated"

    def with_overrides(self, **changes: object) -> StackConfig:
        data = self.model_dump()
        data.update(changes)
        return StackConfig.model_validate(data)


def stack_path(name: str, stacks_dir: Path = STACKS_DIR) -> Path:
    return stacks_dir / f"{name}.yaml"


def load_stack(name_or_path: str, stacks_dir: Path = STACKS_DIR) -> StackConfig:
    """Read `stacks/<name>.yaml` (or a path to a YAML file) into a validated `StackConfig`."""
    candidate = Path(name_or_path)
    path = (
        candidate if candidate.suffix in {".yaml", ".yml", ".json"} else stack_path(name_or_path, stacks_dir)
    )
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in stacks_dir.glob("*.yaml"))) or "none"
        raise FileNotFoundError(f"no stack config {path} (known stacks: {known})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.setdefault("name", path.stem)
    return StackConfig.model_validate(data)
