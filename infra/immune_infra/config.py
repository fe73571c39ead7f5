"""The stack's configuration: one structured object per stack, validated into a frozen model.

The YAML in ``Pulumi.<stack>.yaml`` is camelCase (Pulumi's convention for config); the model's
attributes are snake_case. Unknown keys and wrong types are refused with a message that names the
exact path of each problem, because an operator reading ``pulumi up`` output has nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

PROJECT_NAME = "active-immune-core"
SETTINGS_KEY = "settings"
# Separate top-level keys so that `pulumi config set --secret <key>` stores each as ciphertext.
SECRET_KEYS: tuple[str, ...] = ("postgresPassword", "redisPassword", "apiTokens", "grafanaAdminPassword")
REGISTRY_PASSWORD_KEY = "registryPassword"  # noqa: S105  # nosec B105 # pragma: allowlist secret - a key name

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
BUILD_IMAGE = "build"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


class ConfigError(ValueError):
    """The stack's configuration is invalid; the message lists every problem with its path."""


def image_is_pinned(image: str) -> bool:
    """An image is pinned when it names a sha256 digest or an exact tag other than `latest`."""
    if "@" in image:
        return bool(_DIGEST.search(image))
    last_segment = image.rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return False
    tag = last_segment.rsplit(":", 1)[1]
    return bool(tag) and tag != "latest"


def _check_pinned(image: str) -> str:
    if not image_is_pinned(image):
        raise ValueError(
            f"image {image!r} must be pinned by digest (@sha256:...) or an exact tag, never latest"
        )
    return image


def _check_quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 250m, 512Mi, 10Gi)")
    return value


# Every quantity and image is checked by its type, so a new field cannot forget the check.
Quantity = Annotated[str, Field(min_length=1), AfterValidator(_check_quantity)]
PinnedImage = Annotated[str, Field(min_length=3), AfterValidator(_check_pinned)]


# A colour's image may also be BUILD_IMAGE: the image the program builds and pins itself.
def _check_rollout_image(image: str) -> str:
    return image if image == BUILD_IMAGE else _check_pinned(image)


RolloutImage = Annotated[str, Field(min_length=3), AfterValidator(_check_rollout_image)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=False
    )


class ComputeResources(_Model):
    cpu_request: Quantity
    cpu_limit: Quantity
    memory_request: Quantity
    memory_limit: Quantity


class RolloutImages(_Model):
    blue: RolloutImage
    green: RolloutImage

    def for_color(self, color: Color) -> str:
        return self.blue if color == "blue" else self.green


ColorReplicas = Annotated[int, Field(ge=0, le=200)] | None


class RolloutReplicas(_Model):
    """Per-colour replica override. None: the app default (HPA from `app.replicas`); 0: scaled away
    (`replicas: 0` and no HPA for that colour); N > 0: the colour's HPA minimum is N (`app.replicas.max`
    stays the ceiling)."""

    blue: ColorReplicas = None
    green: ColorReplicas = None

    def for_color(self, color: Color) -> int | None:
        return self.blue if color == "blue" else self.green


def _version_value(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(f"{value!r} is not a version string (letters, digits, '.', '+', '_', '-')")
    return value


def _non_negative_number(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of milliseconds") from None
    if not 0 <= number <= _MAX_FAULT_LATENCY_MS:
        raise ValueError(f"{value!r} must be between 0 and {_MAX_FAULT_LATENCY_MS:g} milliseconds")
    return value


def _ratio(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a ratio") from None
    if not 0 <= number <= 1:
        raise ValueError(f"{value!r} must be a ratio between 0 and 1")
    return value


def _log_level(value: str) -> str:
    if value not in _LOG_LEVELS:
        raise ValueError(f"{value!r} is not a log level ({', '.join(_LOG_LEVELS)})")
    return value


# The only service settings a rollout may override per colour: none of them is a secret or changes
# where the service connects (those come from the program and from Secrets, never from rollout config).
_MAX_FAULT_LATENCY_MS = 60_000.0
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
OVERRIDABLE_ENV: dict[str, Callable[[str], str]] = {
    "IMMUNE_FAULT_LATENCY_MS": _non_negative_number,
    "IMMUNE_FAULT_ERROR_RATIO": _ratio,
    "IMMUNE_LOG_LEVEL": _log_level,
    "IMMUNE_VERSION": _version_value,
}


def _env_value_as_text(value: Any) -> Any:
    # `pulumi config set --path` stores the text "300" as the number 300 and "true" as a boolean
    # (other text stays text), so turning them back into text is exact.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[str, BeforeValidator(_env_value_as_text)]


def check_env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """Validate one colour's overrides against the allow-list; raises ValueError naming every problem."""
    problems: list[str] = []
    for name, value in sorted(env.items()):
        check = OVERRIDABLE_ENV.get(name)
        if check is None:
            problems.append(
                f"{name} cannot be overridden per colour (allowed: {', '.join(sorted(OVERRIDABLE_ENV))})"
            )
            continue
        try:
            check(value)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return dict(env)


ColorEnv = Annotated[dict[str, EnvValue], AfterValidator(check_env_overrides)]


class RolloutEnv(_Model):
    """Per-colour environment overrides (e.g. fault injection for a regression canary), allow-listed."""

    blue: ColorEnv = Field(default_factory=dict)
    green: ColorEnv = Field(default_factory=dict)

    def for_color(self, color: Color) -> dict[str, str]:
        return self.blue if color == "blue" else self.green


_GIT_REF = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._/~^@{}+-]{0,199}$")


def _git_ref(value: str) -> str:
    if not _GIT_REF.match(value):
        raise ValueError(f"{value!r} is not a git revision (letters, digits and . _ / ~ ^ @ {{ }} + -)")
    return value


class RolloutRelease(_Model):
    """The release a colour runs, as the pipeline promoted it: kept in the stack so that every run (on
    any runner, from any checkout) knows what serves. `digest` is the image's (`sha256:<64 hex>`)."""

    version: Annotated[str, AfterValidator(_version_value)]
    ref: Annotated[str, AfterValidator(_git_ref)]
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class RolloutReleases(_Model):
    blue: RolloutRelease | None = None
    green: RolloutRelease | None = None


class Baseline(_Model):
    """Kayenta's fresh baseline: `replicas` new pods of the stable release beside a canary.

    `image` is the stable colour's pinned image (never `build`: the baseline runs what already serves).
    `replicas: 0` is the same as no baseline at all (no Deployment, no Service, no route).
    """

    image: PinnedImage
    replicas: Annotated[int, Field(ge=0, le=200)]


class Rollout(_Model):
    """Rollout state: owned by the promotion pipeline, which sets it through the Automation API."""

    active_color: Color
    canary_weight: Annotated[int, Field(ge=0, le=100)]
    images: RolloutImages
    replicas: RolloutReplicas = RolloutReplicas()
    env: RolloutEnv = RolloutEnv()
    releases: RolloutReleases = RolloutReleases()
    baseline: Baseline | None = None

    @property
    def baseline_replicas(self) -> int:
        """Pods of the fresh baseline (0: none, whether the key is absent or says 0)."""
        return self.baseline.replicas if self.baseline is not None else 0

    @property
    def baseline_weight(self) -> int:
        """Percent of the stable host's traffic on the baseline: the canary's share, taken from stable's
        (at most what stable has left), and 0 without a running baseline or a canary. The same pairing
        as the local stack's HAProxy (immune_suite/targets/local/haproxy.py)."""
        if self.baseline_replicas == 0:
            return 0
        return min(self.canary_weight, 100 - self.canary_weight)

    @property
    def preview_color(self) -> Color:
        return "green" if self.active_color == "blue" else "blue"


ImageBuilder = Literal["auto", "engine-api", "pulumi-docker"]
IMAGE_BUILDERS: tuple[str, ...] = ("auto", "engine-api", "pulumi-docker")


class ImageBuild(_Model):
    """Build and push the service's image (off: colours use the references in `rollout.images`).

    `builder` picks the resource that builds it: `engine-api` the program's own dynamic provider over the
    Docker Engine API (immune_infra.engine_image, no provider plugin), `pulumi-docker` pulumi-docker's
    `Image` (needs the `docker` provider plugin), `auto` pulumi-docker when its plugin is installed, else
    the Engine API. `buildArgs` go to the Dockerfile's ARGs (app/Dockerfile: BASE, PIP_NO_INDEX,
    PIP_FIND_LINKS); `dockerHost` is the daemon (default: DOCKER_HOST or the default socket) and `network`
    the build containers' network (engine-api only); `registryDelete` lets the engine-api
    resource delete its pushed manifest on destroy (docs/infra.md "Image builders").
    """

    enabled: bool = False
    builder: ImageBuilder = "auto"
    repository: str = "ghcr.io/active-immune-core/immune-core"
    tag: str = "0.1.0"
    context: str = "."
    dockerfile: str = "app/Dockerfile"
    platform: str = "linux/amd64"
    build_args: dict[str, str] = Field(default_factory=dict)
    docker_host: str | None = None
    # The build containers' network (engine-api): `none` for a daemon started with --bridge=none.
    network: str | None = None
    registry_server: str | None = None
    registry_username: str | None = None
    registry_delete: bool = False

    @field_validator("tag")
    @classmethod
    def _no_latest(cls, value: str) -> str:
        if not value or value == "latest":
            raise ValueError("the build tag must be an exact version, never latest")
        return value


class Routing(_Model):
    mode: Literal["nginx", "gateway"] = "nginx"
    host: str
    preview_host: str
    # Gateway mode: while a fresh baseline runs, its own HTTPRoute on this host, so the 100 % step's
    # comparison load reaches it through the router as the canary is reached (and attributed by it).
    # None: no such route; the pipeline reaches the baseline's Service from inside the cluster.
    baseline_host: str | None = None
    ingress_class_name: str = "nginx"
    # Name of the kubernetes.io/tls Secret for the hosts (managed outside this program, e.g. cert-manager).
    tls_certificate: str | None = None
    gateway_name: str = "immune-gateway"
    gateway_namespace: str | None = None
    # Namespace of the ingress controller / gateway pods: the only source admitted to the app's port.
    ingress_namespace: str = "ingress-nginx"
    # Gateway mode, the platform path /api/immune/* (docs/infra.md "The platform gateway"): how its auth,
    # aggregated health and rate limit are enforced. "traefik": Middleware objects (traefik.io/v1alpha1)
    # attached to HTTPRoute immune-core-platform by ExtensionRef filters (the local cluster's router,
    # cluster/router/); "none": left to a platform Gateway implementation configured elsewhere.
    gateway_middlewares: Literal["traefik", "none"] = "traefik"
    # Requests per client address per 10 s on /api/immune/* (beyond: 429 with Retry-After); the local
    # stack's `gateway_rate_limit_per_10s` (immune_suite/stack_config.py), same default.
    # (Explicit alias: the generated one would be ...Per10S.)
    gateway_rate_limit_per_10s: Annotated[int, Field(ge=1, le=1_000_000, alias="gatewayRateLimitPer10s")] = (
        1000
    )

    @field_validator("host", "preview_host", "baseline_host")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTNAME.match(value):
            raise ValueError(f"{value!r} is not a DNS host name")
        return value


class Replicas(_Model):
    min: Annotated[int, Field(ge=1, le=100)]
    max: Annotated[int, Field(ge=1, le=200)]

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class AppSettings(_Model):
    replicas: Replicas
    target_cpu_utilization: Annotated[int, Field(ge=10, le=100)] = 70
    pdb_min_available: Annotated[int, Field(ge=0)] = 1
    api_prefix: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    resources: ComputeResources
    migrate_resources: ComputeResources
    # How long `pulumi up` waits for a colour's migration Job and Deployment to be Ready before it fails
    # (the Kubernetes provider's `pulumi.com/timeoutSeconds`); absent = the provider's 10 minutes.
    rollout_timeout_seconds: Annotated[int, Field(ge=30)] | None = None

    @field_validator("api_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError("apiPrefix must be empty or start with '/' and not end with '/'")
        return value


class KafkaSettings(_Model):
    image: PinnedImage
    brokers: Annotated[int, Field(ge=1, le=9)]
    replication_factor: Annotated[int, Field(ge=1)]
    min_insync_replicas: Annotated[int, Field(ge=1)]
    partitions: Annotated[int, Field(ge=1, le=256)] = 3
    storage: Quantity
    storage_class: str | None = None
    resources: ComputeResources
    heap: str = "-Xms512m -Xmx512m"
    topics: tuple[str, ...]
    exporter_image: PinnedImage

    @model_validator(mode="after")
    def _durability(self) -> KafkaSettings:
        if self.replication_factor > self.brokers:
            raise ValueError(
                f"replicationFactor ({self.replication_factor}) cannot exceed brokers ({self.brokers})"
            )
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"minInsyncReplicas ({self.min_insync_replicas}) cannot exceed "
                f"replicationFactor ({self.replication_factor})"
            )
        if self.brokers in (2, 4, 6, 8):
            # KRaft controllers need a majority: an even quorum tolerates no more failures than n-1.
            raise ValueError(f"brokers ({self.brokers}) must be odd: brokers also form the KRaft quorum")
        return self


class RedisSettings(_Model):
    image: PinnedImage
    storage: Quantity
    storage_class: str | None = None
    resources: ComputeResources
    exporter_image: PinnedImage


class PostgresSettings(_Model):
    image: PinnedImage
    storage: Quantity
    storage_class: str | None = None
    database: str = "immune"
    user: str = "immune"
    resources: ComputeResources
    exporter_image: PinnedImage


class SloThresholds(_Model):
    p95_latency_seconds: Annotated[float, Field(gt=0)] = 0.5
    error_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.01
    consumer_lag_max: Annotated[int, Field(ge=1)] = 1000
    outbox_depth_max: Annotated[int, Field(ge=1)] = 500


def split_host_port(value: str) -> tuple[str, int]:
    """`host:port` -> (host, port). The host is an IPv4 address or a DNS name, the port 1..65535;
    raises ValueError saying which part is wrong."""
    host, separator, port_text = value.rpartition(":")
    if not separator or not host:
        raise ValueError(f"{value!r} is not host:port (e.g. 10.244.0.1:18483)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    if not (is_ipv4(host) or _HOSTNAME.match(host)):
        raise ValueError(f"{value!r}: the host must be an IPv4 address or a DNS name")
    return host, int(port_text)


def is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _scrape_target(value: str) -> str:
    split_host_port(value)
    return value


ScrapeTarget = Annotated[str, AfterValidator(_scrape_target)]


class EndpointsDiscovery(_Model):
    """The bundled Prometheus's endpoint discovery on a cluster without DNS (immune_infra.endpoints_sd): a
    sidecar that lists the service's EndpointSlices and writes them for Prometheus's file_sd."""

    # An image with python3 (the local cluster: scripts/images.sh's Python base); the program is mounted.
    image: PinnedImage
    # The API server as the pods reach it behind the `kubernetes` Service (`host:port`, e.g. the local
    # cluster's node address): the Prometheus pod's NetworkPolicy admits that one address and port.
    api_server: ScrapeTarget


class MonitoringSettings(_Model):
    mode: Literal["bundled", "operator"] = "bundled"
    prometheus_image: PinnedImage
    grafana_image: PinnedImage
    retention: str = "15d"
    storage: Quantity
    scrape_interval: str = "15s"
    prometheus_resources: ComputeResources
    grafana_resources: ComputeResources
    # false: no Grafana (bundled mode), e.g. where no Grafana image can be built (the local cluster).
    grafana: bool = True
    # Labels the Prometheus Operator's ruleSelector / serviceMonitorSelector match on.
    operator_release_label: str = "kube-prometheus-stack"
    # Where the operator's Prometheus runs: NetworkPolicies admit its scrapes, the export points at it.
    operator_namespace: str = "monitoring"
    operator_prometheus_url: str = "http://prometheus-operated.monitoring.svc.cluster.local:9090"
    slo: SloThresholds = SloThresholds()
    # The cluster's router's Prometheus endpoint (`host:port`, e.g. the local cluster's Traefik on its
    # bridge address): the bundled Prometheus scrapes it as job `router`, keeping only the series of this
    # namespace's Services (immune_infra.monitoring.router_job). None: no router job.
    router_scrape_target: ScrapeTarget | None = None
    # Required with `cluster.dns: false` in bundled mode (StackSettings checks it), unused otherwise.
    endpoints_discovery: EndpointsDiscovery | None = None

    @model_validator(mode="after")
    def _router_job_is_bundled(self) -> MonitoringSettings:
        # The operator's Prometheus is configured elsewhere: a job here would be a promise nobody keeps.
        if self.router_scrape_target is not None and self.mode != "bundled":
            raise ValueError(
                "routerScrapeTarget needs mode bundled (the operator's Prometheus is configured elsewhere)"
            )
        return self


class ClusterSettings(_Model):
    """What the target cluster offers (the defaults: a usual cluster).

    `dns: false` (no CoreDNS): the service reaches Kafka, Redis and PostgreSQL at their Services'
    ClusterIPs, and Kafka brokers advertise (and find their KRaft voters at) one ClusterIP Service per
    broker, instead of `*.svc.cluster.local` names. `persistentVolumes: false` (no volume provisioner):
    StatefulSets keep their data in an emptyDir. `singleNode: true`: Kafka's brokers may share the one
    node (docs/infra.md "Cluster without DNS or volume provisioner").
    """

    dns: bool = True
    # false: no volume provisioner (the local cluster): StatefulSets keep their data in an emptyDir of at
    # most their `storage` size, for the pod's life, instead of a PersistentVolumeClaim.
    persistent_volumes: bool = True
    # true: one node (the local cluster): Kafka brokers only prefer separate nodes instead of requiring them.
    single_node: bool = False


class CrdSettings(_Model):
    """The published CRDs of the stack's custom kinds (immune_infra.crds): applied by the program
    (`install: true`), or left to the cluster's own installer (`false`, e.g. an operator's Helm chart)."""

    install: bool = True


class QuotaSettings(_Model):
    requests_cpu: Quantity
    requests_memory: Quantity
    limits_cpu: Quantity
    limits_memory: Quantity
    pods: Annotated[int, Field(ge=1)]
    persistent_volume_claims: Annotated[int, Field(ge=1)] = 20


class StackSettings(_Model):
    environment: Literal["staging", "prod"]
    namespace: str
    render_yaml_to_directory: str | None = None
    routing: Routing
    rollout: Rollout
    image_build: ImageBuild = ImageBuild()
    app: AppSettings
    kafka: KafkaSettings
    redis: RedisSettings
    postgres: PostgresSettings
    monitoring: MonitoringSettings
    quota: QuotaSettings
    crds: CrdSettings = CrdSettings()
    cluster: ClusterSettings = ClusterSettings()

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a valid namespace name (RFC 1123 label)")
        return value

    @model_validator(mode="after")
    def _build_consistency(self) -> StackSettings:
        uses_build = BUILD_IMAGE in (self.rollout.images.blue, self.rollout.images.green)
        if uses_build and not self.image_build.enabled:
            raise ValueError(
                f"rollout.images uses {BUILD_IMAGE!r} but imageBuild.enabled is false: "
                "give a pinned image or enable the build"
            )
        return self

    @model_validator(mode="after")
    def _addresses_need_a_cluster(self) -> StackSettings:
        # Without DNS the service's addresses are ClusterIPs, which only an API server allocates: a
        # render (no cluster) would stop halfway with no address to write.
        if not self.cluster.dns and self.render_yaml_to_directory:
            raise ValueError(
                "cluster.dns false needs a cluster (its addresses are allocated ClusterIPs); "
                "renderYamlToDirectory has none: render with cluster.dns true"
            )
        return self

    @model_validator(mode="after")
    def _discovery_without_dns(self) -> StackSettings:
        # Without DNS the bundled Prometheus finds the service's pods only through the discovery sidecar:
        # without it a colour would be scraped through its Service, one pod of several per scrape.
        needed = not self.cluster.dns and self.monitoring.mode == "bundled"
        if needed and self.monitoring.endpoints_discovery is None:
            raise ValueError(
                "cluster.dns false with bundled monitoring needs monitoring.endpointsDiscovery "
                "(image, apiServer): Prometheus finds each pod through the API, not DNS"
            )
        return self

    @model_validator(mode="after")
    def _replicas_within_quota(self) -> StackSettings:
        # The ResourceQuota is sized for each colour at `app.replicas.max`; a larger override would
        # fail at admission, pod by pod, long after `pulumi up` reported success.
        ceiling = self.app.replicas.max
        for color in COLORS:
            wanted = self.rollout.replicas.for_color(color)
            if wanted is not None and wanted > ceiling:
                raise ValueError(
                    f"rollout.replicas.{color} ({wanted}) exceeds app.replicas.max ({ceiling}), "
                    "the most the quota is sized for"
                )
        if self.rollout.baseline_replicas > ceiling:
            raise ValueError(
                f"rollout.baseline.replicas ({self.rollout.baseline_replicas}) exceeds "
                f"app.replicas.max ({ceiling}), the most the quota is sized for"
            )
        return self

    @model_validator(mode="after")
    def _worst_case_within_quota(self) -> StackSettings:
        # Pods beyond the ResourceQuota are refused at admission, one by one: `up` would then wait for
        # them until it times out. Refuse here instead, naming the numbers. (Imported here: the footprint
        # module sizes its pods with this module's models.)
        from immune_infra.footprint import over_quota, settings_footprint

        excess = over_quota(settings_footprint(self), self.quota)
        if excess:
            baseline = self.rollout.baseline_replicas
            raise ValueError(
                "the worst case does not fit the ResourceQuota (both colours at app.replicas.max "
                f"{self.app.replicas.max} plus a surge pod, every StatefulSet and Job"
                + (f", the baseline's {baseline} pods" if baseline else "")
                + "): "
                + "; ".join(excess)
            )
        return self

    def replicas_for(self, color: Color) -> int | None:
        return self.rollout.replicas.for_color(color)

    def env_for(self, color: Color) -> dict[str, str]:
        return self.rollout.env.for_color(color)

    def image_for(self, color: Color) -> str:
        return self.rollout.images.for_color(color)


def _format_errors(error: ValidationError, root: str) -> str:
    lines = [f"invalid Pulumi config {root!r}:"]
    for item in error.errors():
        path = "".join(f".{part}" for part in item["loc"])  # empty for whole-object checks
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (not part of the settings schema)"
        got = item.get("input")
        shown = "" if item["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {root}{path}: {message}{shown}")
    return "\n".join(lines)


def parse_settings(raw: Mapping[str, Any] | str) -> StackSettings:
    """Validate the structured `settings` object (a mapping, or the JSON Pulumi hands the program)."""
    data: Any = raw
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"invalid Pulumi config {SETTINGS_KEY!r}: not a structured object ({exc})"
            ) from exc
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"invalid Pulumi config {SETTINGS_KEY!r}: expected an object, got {type(data).__name__}"
        )
    try:
        return StackSettings.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, SETTINGS_KEY)) from None
