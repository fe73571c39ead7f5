"""The service: blue and green Deployments, their migration Jobs, Services, canary routing, HPA, PDB.

Blue/green invariants (tests/infra check them on the rendered objects):
- the colour is part of each Deployment's selector and pod labels and never changes;
- `rollout.activeColor` only moves Service selectors: the stable Service follows it and the preview
  Service is, by definition, on the other colour. Nothing else depends on it;
- `rollout.canaryWeight` only changes the canary route: 0 means no canary route at all (gateway: no
  weighted backend; nginx: the canary Ingress stays, at weight 0 and without the header rule, so the
  switch updates it in order instead of deleting it last), 1..100 sends that share of the stable
  host's traffic to the preview colour, and the `X-Immune-Canary: always` header forces it;
- `rollout.replicas.<colour>` changes only that colour's Deployment and HPA: unset, the HPA owns the
  count within `app.replicas`; N > 0 sets the HPA's floor to N; 0 declares `replicas: 0` and no HPA
  at all for the colour, so nothing scales a retired or aborted colour back up;
- `rollout.env.<colour>` (allow-listed, non-secret settings such as fault injection) changes only that
  colour's Deployment; migration Jobs never see it (they are immutable, and faults are a serving concern);
- `rollout.baseline` (Kayenta's fresh baseline: the stable image, N pods) adds `immune-core-baseline`
  (Deployment with colour label `baseline`, fixed count, no HPA, no PDB, no migration Job: its image
  already serves, migrated) and its own Service. The stable and preview Services select blue or green
  only, so they never reach it. With HTTPRoutes it takes the canary's share out of stable's
  (`Rollout.baseline_weight`); an nginx canary Ingress has one canary backend only, so there
  the pipeline's second load reaches the baseline through its Service instead (docs/infra.md).
  Its pods are ordinary members of the service (same env, Kafka group and lease as a colour's pods:
  a separate group would process every event a second time), and leave when the key is removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import COLORS, Color, Routing, StackSettings
from immune_infra.credentials import service_token_entries
from immune_infra.footprint import WAIT_FOR_POSTGRES
from immune_infra.workload import (
    MOUNT_API_TOKEN,
    TMP_PATH,
    container_security_context,
    content_hash,
    empty_dir,
    field_env,
    labels,
    mount,
    plain_env,
    pod_security_context,
    resources,
    secret_env,
    service_dns,
)

APP_NAME = "immune-core"
COLOR_LABEL = "immune.vertice.dev/color"
HTTP_PORT = 8080
SERVICE_PORT = 80
STABLE_SERVICE = APP_NAME
PREVIEW_SERVICE = f"{APP_NAME}-preview"
PLATFORM_PREFIX = "/api/immune"  # the platform gateway's path to the core (local: targets/local/gateway.py)
PLATFORM_ROUTE = f"{APP_NAME}-platform"
# The platform gateway's Traefik Middlewares (routing.gatewayMiddlewares: traefik; docs/infra.md).
TRAEFIK_GROUP = "traefik.io"
GATEWAY_PLUGIN = "immunegateway"  # the router's local plugin (cluster/router/router.sh, plugins-local/)
PLATFORM_API = f"{PLATFORM_ROUTE}-api"
PLATFORM_RATE_LIMIT = f"{PLATFORM_ROUTE}-rate-limit"
PLATFORM_HEALTH = f"{PLATFORM_ROUTE}-health"
HEALTH_SERVICE_NAME = "immune_core"  # the core's name in the gateway's aggregated health
RATE_WINDOW_S = 10
API_SECRET = f"{APP_NAME}-api"
CANARY_HEADER = "X-Immune-Canary"
# Gateway mode: the router sets this on every response it sends through a backend of the app's routes,
# to that backend's Service name, its own 502/503/504 included, replacing any value the pod sent: the
# pipeline attributes each request from the router's view, never from a header the candidate sets
# (immune_suite/gates/attribution.py; Gateway API backendRef filter ResponseHeaderModifier).
SERVED_BY_HEADER = "X-Immune-Served-By"
KAFKA_GROUP_ID = APP_NAME
BASELINE = "baseline"
BASELINE_SERVICE = f"{APP_NAME}-{BASELINE}"
# pulumi-kubernetes: apply with force, taking over fields another field manager (the HPA) last wrote.
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"
# The provider's wait for readiness (app.rolloutTimeoutSeconds) on each colour's Deployment: a colour
# that cannot become Ready then fails `pulumi up` in that time, the other colour still serving. The
# migration Job before it is bounded by its activeDeadlineSeconds instead (see _migration_job).
TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
# Above the readiness handler's own 2 s bound on its database ping (app runtime.readiness).
READY_PROBE_TIMEOUT_S = 4
# A migration's run time when app.rolloutTimeoutSeconds is unset (the Job's activeDeadlineSeconds).
MIGRATION_DEADLINE_S = 900


def deployment_name(color: Color) -> str:
    return f"{APP_NAME}-{color}"


def pods_service_name(color: Color) -> str:
    """Headless Service per colour: Prometheus discovers each pod through its DNS A records."""
    return f"{APP_NAME}-{color}-pods"


def app_labels(component: str = "api") -> dict[str, str]:
    return labels(APP_NAME, component)


def color_labels(color: Color | str) -> dict[str, str]:
    return {**app_labels(), COLOR_LABEL: color}


def baseline_labels() -> dict[str, str]:
    """The baseline's pods: the app's labels (so NetworkPolicies treat them as the service) and a
    colour value no stable/preview Service, PDB or HPA selects."""
    return color_labels(BASELINE)


@dataclass(frozen=True)
class AppDependencies:
    """What the service connects to: names of Secrets (values stay in k8s) and the Kafka address."""

    database_secret: str
    database_url_key: str
    redis_secret: str
    redis_url_key: str
    # DNS names, or ClusterIPs (Outputs) when the cluster has no DNS (settings.cluster.dns).
    kafka_bootstrap_servers: pulumi.Input[str]
    postgres_image: str
    postgres_host: pulumi.Input[str]
    postgres_user: str
    waits_for: list[pulumi.Resource]


class ImmuneApp(pulumi.ComponentResource):
    stable_url: str
    preview_url: str
    canary_url: str

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        images: Mapping[Color, pulumi.Input[str]],
        api_tokens: pulumi.Output[str],
        dependencies: AppDependencies,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
        crds: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("immune:immune_app:ImmuneApp", name, None, opts)
        self._name = name
        # The HTTPRoute definition when the program applies it (immune_infra.crds).
        self._crds = list(crds)
        self._settings = settings
        self._namespace = namespace
        self._provider = provider
        self._dependencies = dependencies
        self._identity(api_tokens)
        self.migrations: dict[Color, k8s.batch.v1.Job] = {}
        self.deployments: dict[Color, k8s.apps.v1.Deployment] = {}
        self.pods_services: dict[Color, k8s.core.v1.Service] = {}
        for color in COLORS:
            migration = self._migration_job(color, images[color])
            self.migrations[color] = migration
            self.deployments[color] = self._deployment(color, images[color], migration)
            self.pods_services[color] = self._pods_service(color)
            if settings.replicas_for(color) != 0:
                self._autoscaler(color)
            self._disruption_budget(color)

        rollout = settings.rollout
        self.activation = self._activation_job(rollout.active_color, images[rollout.active_color])
        self.baseline_deployment: k8s.apps.v1.Deployment | None = None
        self.baseline_service: k8s.core.v1.Service | None = None
        if rollout.baseline is not None and rollout.baseline.replicas > 0:
            self.baseline_deployment = self._baseline_deployment(
                rollout.baseline.image, rollout.baseline.replicas
            )
            self.baseline_service = self._labelled_service(BASELINE_SERVICE, BASELINE, baseline_labels())
        self.stable_service = self._service(STABLE_SERVICE, "stable", rollout.active_color)
        # The switch is one `up`, ordered by these dependencies (Pulumi updates a resource only after
        # the ones it depends on): the stable Service moves to the new colour first (its canary share
        # already went there), then the stable host's canary route lets go of the preview Service
        # (gateway: the stable HTTPRoute drops the preview backend; nginx: the canary Ingress drops to
        # weight 0), and only then does the preview Service move to the old colour. At no point does
        # the stable host route to a Service that selects the old colour (tests/infra/test_switch_order.py).
        if settings.routing.mode == "nginx":
            canary_ingress = self._nginx_routes()
            self.preview_service = self._service(
                PREVIEW_SERVICE, "preview", rollout.preview_color, depends_on=[canary_ingress]
            )
        else:
            stable_route = self._gateway_routes()
            self.preview_service = self._service(
                PREVIEW_SERVICE, "preview", rollout.preview_color, depends_on=[stable_route]
            )

        self._urls()
        self.register_outputs(
            {"stable_url": self.stable_url, "preview_url": self.preview_url, "canary_url": self.canary_url}
        )

    def _identity(self, api_tokens: pulumi.Output[str]) -> None:
        """The pods' ServiceAccount (no API token mounted) and the Secret of the API tokens' digests."""
        child = self._child()
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{self._name}-sa",
            metadata={"name": APP_NAME, "namespace": self._namespace, "labels": app_labels()},
            # The service never talks to the Kubernetes API; no token in its pods.
            automount_service_account_token=MOUNT_API_TOKEN,
            opts=child,
        )
        # Digests only (credentials.service_token_entries): no plain token in the cluster.
        token_entries: pulumi.Output[str] = pulumi.Output.secret(api_tokens.apply(service_token_entries))
        self.api_secret = k8s.core.v1.Secret(
            f"{self._name}-api-tokens",
            metadata={"name": API_SECRET, "namespace": self._namespace, "labels": app_labels()},
            type="Opaque",
            string_data={"tokens": token_entries},
            opts=child,
        )

    def _urls(self) -> None:
        """Where the pipeline reaches each Service: the stable, preview and canary URLs, the baseline's."""
        settings = self._settings
        routing = settings.routing
        scheme = "https" if routing.tls_certificate else "http"
        self.stable_url = f"{scheme}://{routing.host}{settings.app.api_prefix}"
        self.preview_url = f"{scheme}://{routing.preview_host}{settings.app.api_prefix}"
        # Canary traffic shares the stable host: a weighted share, or all of it with the header.
        self.canary_url = self.stable_url
        # The baseline (the pipeline's second load at 100 %, and its only load with an nginx canary
        # Ingress): its own host through the router in gateway mode with `routing.baselineHost`, else
        # its Service, reached from inside the cluster.
        self.baseline_url: str | None = None
        if self.baseline_service is not None:
            if routing.mode == "gateway" and routing.baseline_host:
                self.baseline_url = f"{scheme}://{routing.baseline_host}{settings.app.api_prefix}"
            else:
                self.baseline_url = (
                    f"http://{service_dns(BASELINE_SERVICE, settings.namespace)}{settings.app.api_prefix}"
                )

    def _child(self, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._provider, depends_on=depends_on or [])

    def _app_env(self, color: Color | str) -> list[k8s.core.v1.EnvVarArgsDict]:
        deps = self._dependencies
        app = self._settings.app
        return [
            secret_env("IMMUNE_DATABASE_URL", deps.database_secret, deps.database_url_key),
            secret_env("IMMUNE_REDIS_URL", deps.redis_secret, deps.redis_url_key),
            secret_env("IMMUNE_API_TOKENS", API_SECRET, "tokens"),
            plain_env("IMMUNE_KAFKA_BOOTSTRAP_SERVERS", deps.kafka_bootstrap_servers),
            plain_env("IMMUNE_KAFKA_GROUP_ID", KAFKA_GROUP_ID),
            plain_env("IMMUNE_KAFKA_TOPIC_PARTITIONS", str(self._settings.kafka.partitions)),
            plain_env("IMMUNE_DEPLOYMENT_COLOR", color),
            plain_env("IMMUNE_API_PREFIX", app.api_prefix),
            plain_env("IMMUNE_LOG_LEVEL", app.log_level),
            plain_env("IMMUNE_DATA_DIR", f"{TMP_PATH}/immune"),  # unused with a database
            field_env("IMMUNE_INSTANCE_ID", "metadata.name"),
        ]

    def _serving_env(self, color: Color) -> list[k8s.core.v1.EnvVarArgsDict]:
        """The Deployment's env: the app env with this colour's rollout overrides.

        An override of a variable the program already sets replaces its value in place (one entry per
        name, and a minimal diff); the others follow in name order so renders stay deterministic.
        """
        overrides = self._settings.env_for(color)
        env = [
            plain_env(item["name"], overrides[item["name"]]) if item["name"] in overrides else item
            for item in self._app_env(color)
        ]
        present = {item["name"] for item in env}
        env.extend(plain_env(name, overrides[name]) for name in sorted(overrides) if name not in present)
        return env

    def _timeout_annotation(self) -> dict[str, str]:
        seconds = self._settings.app.rollout_timeout_seconds
        return {} if seconds is None else {TIMEOUT_ANNOTATION: str(seconds)}

    def _migration_deadline(self) -> int:
        """Seconds the migration Job may run (`spec.activeDeadlineSeconds`): app.rolloutTimeoutSeconds,
        else MIGRATION_DEADLINE_S."""
        seconds = self._settings.app.rollout_timeout_seconds
        return MIGRATION_DEADLINE_S if seconds is None else seconds

    def _migration_job(self, color: Color, image: pulumi.Input[str]) -> k8s.batch.v1.Job:
        """`immune-core migrate` with this colour's image, before that colour's pods roll.

        Jobs are immutable, so the name carries a digest of the image and of the deadline: a new image
        is a new Job, and so is a new deadline. A deadline changed in place on a finished Job did not
        always stay changed back (an `up` after a failed one with another `app.rolloutTimeoutSeconds`
        then found the Job's spec still differing: tests/cluster/test_deploy.py); a new Job re-runs the
        migration, which is idempotent.
        """
        deps = self._dependencies
        job_labels = {**app_labels("migrate"), COLOR_LABEL: color}
        deadline = self._migration_deadline()
        job_name = pulumi.Output.from_input(image).apply(
            lambda ref: f"{APP_NAME}-migrate-{color}-{content_hash(f'{ref} {deadline}', length=8)}"
        )
        wait_command = pulumi.Output.from_input(deps.postgres_host).apply(
            lambda host: f"until pg_isready -h {host} -p 5432 -U {deps.postgres_user}; do sleep 2; done"
        )
        return k8s.batch.v1.Job(
            f"{self._name}-migrate-{color}",
            metadata={
                "name": job_name,
                "namespace": self._namespace,
                "labels": job_labels,
                "annotations": self._timeout_annotation(),
            },
            spec={
                "backoff_limit": 4,
                # The bound on the migration is Kubernetes' own: past it the Job controller fails the
                # Job (DeadlineExceeded) and the provider reports that. The provider's Job await does
                # not bound it: it re-arms its timer on every Job/pod event, and a pod in
                # ImagePullBackOff emits one at each pull retry, so `pulumi up` waited past 600 s
                # with a 60 s `pulumi.com/timeoutSeconds` (pulumi-kubernetes pkg/await/job.go).
                "active_deadline_seconds": deadline,
                "template": {
                    "metadata": {"labels": job_labels},
                    "spec": self._one_shot_pod_spec(
                        color,
                        image,
                        ["immune-core", "migrate"],
                        init_containers=[
                            {
                                "name": "wait-for-postgres",
                                "image": deps.postgres_image,
                                "image_pull_policy": "IfNotPresent",
                                "command": ["sh", "-c", wait_command],
                                "resources": resources(WAIT_FOR_POSTGRES),
                                "security_context": container_security_context(),
                            }
                        ],
                    ),
                },
            },
            # Delete before replace: after a failed rollout (the new Job failed, e.g. its image cannot
            # be pulled) the next `up` with the previous image re-creates the previous Job's name;
            # created beside the old object it would collide with it (a Server-Side Apply conflict).
            opts=pulumi.ResourceOptions.merge(
                self._child(depends_on=[*deps.waits_for, self.api_secret, self.service_account]),
                pulumi.ResourceOptions(delete_before_replace=True),
            ),
        )

    def _one_shot_pod_spec(
        self,
        color: Color,
        image: pulumi.Input[str],
        command: list[str],
        init_containers: list[Any] | None = None,
    ) -> dict[str, Any]:
        """The pod of a one-shot `immune-core` command Job (migrate, activate): `color`'s image and env."""
        name = command[1]
        spec: dict[str, Any] = {
            "restart_policy": "Never",
            "service_account_name": APP_NAME,
            "automount_service_account_token": MOUNT_API_TOKEN,
            "security_context": pod_security_context(fs_group=False),
        }
        if init_containers:
            spec["init_containers"] = init_containers
        spec["containers"] = [
            {
                "name": name,
                "image": image,
                "image_pull_policy": "IfNotPresent",
                "command": command,
                "env": self._app_env(color),
                "resources": resources(self._settings.app.migrate_resources),
                "security_context": container_security_context(),
                "volume_mounts": [mount("tmp", TMP_PATH)],
            }
        ]
        spec["volumes"] = [empty_dir("tmp")]
        return spec

    def _activation_job(self, color: Color, image: pulumi.Input[str]) -> k8s.batch.v1.Job:
        """`immune-core activate COLOR` once the active colour's pods are up: the row the services read
        (docs/service.md, "the idle colour is idle") so that only the active colour's replicas join the
        consumer group and campaign for the lease. Without it every colour is live and each candidate
        coming and going rebalances the stable colour's consumer.

        The name carries the colour: a switch is a new Job (Jobs are immutable), and one that ran for
        the same colour before is simply replaced (`activate` is idempotent).
        """
        job_labels = {**app_labels("activate"), COLOR_LABEL: color}
        return k8s.batch.v1.Job(
            f"{self._name}-activate",
            metadata={
                "name": f"{APP_NAME}-activate-{color}",
                "namespace": self._namespace,
                "labels": job_labels,
                "annotations": self._timeout_annotation(),
            },
            spec={
                "backoff_limit": 4,
                # A fixed deadline, not app.rolloutTimeoutSeconds: a finished Job's deadline edited in
                # place did not stay changed back after a failed `up` (tests/cluster/test_deploy.py), and
                # this Job runs an image its colour's pods already run (no pull to bound).
                "active_deadline_seconds": MIGRATION_DEADLINE_S,
                "template": {
                    "metadata": {"labels": job_labels},
                    "spec": self._one_shot_pod_spec(color, image, ["immune-core", "activate", color]),
                },
            },
            opts=pulumi.ResourceOptions.merge(
                self._child(depends_on=[self.deployments[color], self.migrations[color]]),
                pulumi.ResourceOptions(delete_before_replace=True),
            ),
        )

    def _pod_spec(
        self,
        selector: dict[str, str],
        image: pulumi.Input[str],
        env: list[k8s.core.v1.EnvVarArgsDict],
    ) -> k8s.core.v1.PodSpecArgsDict:
        """The serving pod: one spec for both colours and the baseline, so they differ only in labels,
        image and env (a baseline that differed in anything else would not be a fair comparison)."""
        # Probe timeouts above the kubelet's 1 s default: /health/ready bounds its database ping at
        # 2 s (runtime.readiness), and a replica busy catching up a backlog answers in more than 1 s
        # without being unready; a 1 s timeout took such a pod out of every Service until it idled.
        http_probe: Any = {"http_get": {"path": "/health/live", "port": "http"}, "timeout_seconds": 3}
        pod_spec: k8s.core.v1.PodSpecArgsDict = {
            "service_account_name": APP_NAME,
            "automount_service_account_token": MOUNT_API_TOKEN,
            "security_context": pod_security_context(fs_group=False),
            "termination_grace_period_seconds": 30,
            "topology_spread_constraints": [
                {
                    "max_skew": 1,
                    "topology_key": "kubernetes.io/hostname",
                    "when_unsatisfiable": "ScheduleAnyway",
                    "label_selector": {"match_labels": selector},
                }
            ],
            "containers": [
                {
                    "name": APP_NAME,
                    "image": image,
                    "image_pull_policy": "IfNotPresent",
                    "command": [
                        "immune-core",
                        "serve",
                        "--host",
                        "0.0.0.0",  # noqa: S104  # nosec B104 - listen on the pod IP
                        "--port",
                        str(HTTP_PORT),
                        # Only the ingress controller's namespace reaches this port (NetworkPolicy),
                        # so its X-Forwarded-* headers carry the real client address.
                        "--forwarded-allow-ips",
                        "*",
                    ],
                    "env": env,
                    "ports": [{"name": "http", "container_port": HTTP_PORT}],
                    "startup_probe": {**http_probe, "period_seconds": 2, "failure_threshold": 60},
                    "liveness_probe": {**http_probe, "period_seconds": 10, "failure_threshold": 3},
                    "readiness_probe": {
                        "http_get": {"path": "/health/ready", "port": "http"},
                        "timeout_seconds": READY_PROBE_TIMEOUT_S,
                        "period_seconds": 5,
                        "failure_threshold": 2,
                    },
                    "resources": resources(self._settings.app.resources),
                    "security_context": container_security_context(),
                    "volume_mounts": [mount("tmp", TMP_PATH)],
                }
            ],
            "volumes": [empty_dir("tmp", "256Mi")],
        }
        return pod_spec

    def _deployment(
        self, color: Color, image: pulumi.Input[str], migration: k8s.batch.v1.Job
    ) -> k8s.apps.v1.Deployment:
        selector = color_labels(color)
        pod_spec = self._pod_spec(selector, image, self._serving_env(color))
        spec: k8s.apps.v1.DeploymentSpecArgsDict = {
            "selector": {"match_labels": selector},
            "revision_history_limit": 5,
            "strategy": {
                "type": "RollingUpdate",
                "rolling_update": {"max_unavailable": 0, "max_surge": 1},
            },
            "template": {"metadata": {"labels": selector}, "spec": pod_spec},
        }
        if self._settings.replicas_for(color) == 0:
            # Scaled away: the count is declared and this colour has no HPA. Otherwise `replicas` is
            # left out so the HorizontalPodAutoscaler owns it (declaring it would reset the
            # autoscaler's choice on every `pulumi up`). Dropping the field again hands it back: the
            # API server defaults it to 1 and the re-created HPA raises it to its minimum.
            spec["replicas"] = 0
        return k8s.apps.v1.Deployment(
            f"{self._name}-{color}",
            metadata={
                "name": deployment_name(color),
                "namespace": self._namespace,
                "labels": selector,
                # Server-side apply: the HPA controller last wrote `spec.replicas` (through /scale), so
                # declaring `replicas: 0` conflicts with it unless Pulumi forces the field it declares.
                "annotations": {PATCH_FORCE_ANNOTATION: "true", **self._timeout_annotation()},
            },
            spec=spec,
            opts=self._child(depends_on=[migration]),
        )

    def _baseline_deployment(self, image: str, replicas: int) -> k8s.apps.v1.Deployment:
        """Fresh pods of the stable image: a fixed count (no HPA owns it) and no migration Job."""
        selector = baseline_labels()
        return k8s.apps.v1.Deployment(
            f"{self._name}-{BASELINE}",
            metadata={"name": BASELINE_SERVICE, "namespace": self._namespace, "labels": selector},
            spec={
                "selector": {"match_labels": selector},
                "replicas": replicas,
                "revision_history_limit": 2,
                "strategy": {
                    "type": "RollingUpdate",
                    "rolling_update": {"max_unavailable": 0, "max_surge": 1},
                },
                "template": {
                    "metadata": {"labels": selector},
                    "spec": self._pod_spec(selector, image, self._app_env(BASELINE)),
                },
            },
            opts=self._child(depends_on=[self.api_secret, self.service_account]),
        )

    def _pods_service(self, color: Color) -> k8s.core.v1.Service:
        return k8s.core.v1.Service(
            f"{self._name}-{color}-pods",
            metadata={
                "name": pods_service_name(color),
                "namespace": self._namespace,
                "labels": {**app_labels("api-pods"), COLOR_LABEL: color},
            },
            spec={
                # Headless: Prometheus resolves each pod by DNS, or, without cluster DNS, reads this
                # Service's EndpointSlices through its discovery sidecar (immune_infra.monitoring).
                "cluster_ip": "None",
                "selector": color_labels(color),
                "ports": [{"name": "http", "port": HTTP_PORT, "target_port": "http"}],
            },
            opts=self._child(),
        )

    def _autoscaler(self, color: Color) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
        app = self._settings.app
        return k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._name}-{color}-hpa",
            metadata={
                "name": deployment_name(color),
                "namespace": self._namespace,
                "labels": color_labels(color),
            },
            spec={
                "scale_target_ref": {
                    "api_version": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment_name(color),
                },
                # A per-colour count (rollout.replicas) sets the floor; validation keeps it <= max.
                "min_replicas": self._settings.replicas_for(color) or app.replicas.min,
                "max_replicas": app.replicas.max,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "average_utilization": app.target_cpu_utilization,
                            },
                        },
                    }
                ],
                "behavior": {"scale_down": {"stabilization_window_seconds": 300}},
            },
            opts=self._child(depends_on=[self.deployments[color]]),
        )

    def _disruption_budget(self, color: Color) -> k8s.policy.v1.PodDisruptionBudget:
        min_available = self._settings.app.pdb_min_available
        spec: k8s.policy.v1.PodDisruptionBudgetSpecArgsDict = {
            "selector": {"match_labels": color_labels(color)}
        }
        if min_available > 0:
            spec["min_available"] = min_available
        else:
            spec["max_unavailable"] = 1
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-{color}-pdb",
            metadata={
                "name": deployment_name(color),
                "namespace": self._namespace,
                "labels": color_labels(color),
            },
            spec=spec,
            opts=self._child(),
        )

    def _service(
        self, service_name: str, role: str, color: Color, depends_on: list[pulumi.Resource] | None = None
    ) -> k8s.core.v1.Service:
        return self._labelled_service(service_name, role, color_labels(color), depends_on)

    def _labelled_service(
        self,
        service_name: str,
        role: str,
        selector: dict[str, str],
        depends_on: list[pulumi.Resource] | None = None,
    ) -> k8s.core.v1.Service:
        return k8s.core.v1.Service(
            f"{self._name}-{role}",
            metadata={
                "name": service_name,
                "namespace": self._namespace,
                "labels": {**app_labels(), "immune.vertice.dev/role": role},
            },
            spec={
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": SERVICE_PORT, "target_port": "http"}],
            },
            opts=self._child(depends_on=depends_on),
        )

    def _ingress(
        self,
        suffix: str,
        ingress_name: str,
        host: str,
        service: str,
        annotations: dict[str, str],
        depends_on: list[pulumi.Resource] | None = None,
    ) -> k8s.networking.v1.Ingress:
        routing = self._settings.routing
        spec: k8s.networking.v1.IngressSpecArgsDict = {
            "ingress_class_name": routing.ingress_class_name,
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "path_type": "Prefix",
                                "backend": {"service": {"name": service, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ],
        }
        if routing.tls_certificate:
            spec["tls"] = [{"hosts": [host], "secret_name": routing.tls_certificate}]
        return k8s.networking.v1.Ingress(
            f"{self._name}-{suffix}",
            metadata={
                "name": ingress_name,
                "namespace": self._namespace,
                "labels": app_labels(),
                "annotations": annotations,
            },
            spec=spec,
            opts=self._child(depends_on=depends_on),
        )

    def _nginx_routes(self) -> k8s.networking.v1.Ingress:
        """The stable, preview and canary Ingresses; returns the canary one.

        The canary Ingress always exists, so that the switch updates it (ordered: after the stable
        Service, before the preview Service) rather than deleting it (Pulumi runs deletes last, after
        the preview Service has moved to the old colour). Outside a canary it has weight 0 and no
        header rule: ingress-nginx sends a canary Ingress at `canary-weight: "0"` no weighted traffic
        (kubernetes.github.io/ingress-nginx, annotations, "Canary"), Traefik's ingress-nginx provider
        gives its backend weight 0, which its weighted round robin never picks
        (pkg/provider/kubernetes/ingress-nginx/translator.go, pkg/server/service/loadbalancer/wrr), and
        without `canary-by-header` neither builds a header route: no request reaches the preview Service
        through the stable host.

        Pulumi does not await it (`pulumi.com/skipAwait`): its Ingress await wants
        `.status.loadBalancer.ingress`, which Traefik's ingress-nginx provider publishes for a canary
        Ingress only once the preview Service has endpoints (build.go skips it before), and on a new
        stack that Service is created after it (it depends on it), while a retired colour has none:
        the `up` would wait out the await's timeout. The switch's order needs the API writes ordered,
        which the dependencies give, as with the HTTPRoutes (custom resources, never awaited).
        """
        routing = self._settings.routing
        weight = self._settings.rollout.canary_weight
        self.stable_ingress = self._ingress("stable-ingress", APP_NAME, routing.host, STABLE_SERVICE, {})
        self.preview_ingress = self._ingress(
            "preview-ingress", PREVIEW_SERVICE, routing.preview_host, PREVIEW_SERVICE, {}
        )
        annotations = {
            "pulumi.com/skipAwait": "true",
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": str(weight),
            "nginx.ingress.kubernetes.io/canary-weight-total": "100",
        }
        if weight > 0:
            annotations["nginx.ingress.kubernetes.io/canary-by-header"] = CANARY_HEADER
        self.canary_ingress = self._ingress(
            "canary-ingress",
            f"{APP_NAME}-canary",
            routing.host,
            PREVIEW_SERVICE,
            annotations,
            depends_on=[self.stable_service],
        )
        return self.canary_ingress

    def _http_route(
        self,
        suffix: str,
        route_name: str,
        host: str,
        rules: list[dict[str, Any]],
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> k8s.apiextensions.CustomResource:
        routing = self._settings.routing
        parent: dict[str, Any] = {"name": routing.gateway_name}
        if routing.gateway_namespace:
            parent["namespace"] = routing.gateway_namespace
        return k8s.apiextensions.CustomResource(
            f"{self._name}-{suffix}",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={"name": route_name, "namespace": self._namespace, "labels": app_labels()},
            spec={"parentRefs": [parent], "hostnames": [host], "rules": rules},
            opts=self._child(depends_on=[*self._crds, *depends_on]),
        )

    def _platform_middlewares(self) -> list[pulumi.Resource]:
        """The Traefik Middleware objects the platform route's ExtensionRef filters name (same namespace:
        an ExtensionRef is a local reference). Traefik's CRDs are the router's (cluster/router/crds/)."""
        return [
            k8s.apiextensions.CustomResource(
                f"{self._name}-{name}",
                api_version=f"{TRAEFIK_GROUP}/v1alpha1",
                kind="Middleware",
                metadata={"name": name, "namespace": self._namespace, "labels": app_labels()},
                spec=spec,
                opts=self._child(),
            )
            for name, spec in platform_middlewares(self._settings.routing).items()
        ]

    def _gateway_routes(self) -> k8s.apiextensions.CustomResource:
        """The stable, preview, baseline and platform HTTPRoutes; returns the stable one."""
        routing = self._settings.routing
        weight = self._settings.rollout.canary_weight
        paired = self._settings.rollout.baseline_weight
        prefix: dict[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}

        def backend(service: str, backend_weight: int | None = None) -> dict[str, Any]:
            ref: dict[str, Any] = {"name": service, "port": SERVICE_PORT, "filters": [served_by(service)]}
            if backend_weight is not None:
                ref["weight"] = backend_weight
            return ref

        stable_rules: list[dict[str, Any]]
        if weight > 0:
            # A running baseline takes the canary's share out of stable's: stable + canary + baseline = 100.
            weighted = [backend(STABLE_SERVICE, 100 - weight - paired), backend(PREVIEW_SERVICE, weight)]
            if paired:
                weighted.append(backend(BASELINE_SERVICE, paired))
            stable_rules = [
                {
                    "matches": [{**prefix, "headers": [{"name": CANARY_HEADER, "value": "always"}]}],
                    "backendRefs": [backend(PREVIEW_SERVICE)],
                },
                {"matches": [prefix], "backendRefs": weighted},
            ]
        else:
            stable_rules = [{"matches": [prefix], "backendRefs": [backend(STABLE_SERVICE, 100)]}]
        stable_route = self._http_route(
            "stable-route", APP_NAME, routing.host, stable_rules, depends_on=[self.stable_service]
        )
        self._http_route(
            "preview-route",
            PREVIEW_SERVICE,
            routing.preview_host,
            [{"matches": [prefix], "backendRefs": [backend(PREVIEW_SERVICE)]}],
        )
        if self.baseline_service is not None and routing.baseline_host:
            self._http_route(
                "baseline-route",
                BASELINE_SERVICE,
                routing.baseline_host,
                [{"matches": [prefix], "backendRefs": [backend(BASELINE_SERVICE)]}],
            )
        # The platform's API path (docs/service.md, "Behind the platform gateway"): /api/immune/* on the
        # same host reaches the stable core's /api/v1/*, its probes under /api/immune/health/. A route
        # of its own, always to stable: the canary's weights above stay the only thing a rollout moves.
        middlewares = self._platform_middlewares()
        self._http_route(
            "platform-route", PLATFORM_ROUTE, routing.host, platform_rules(routing), depends_on=middlewares
        )
        return stable_route


def platform_middlewares(routing: Routing) -> dict[str, dict[str, Any]]:
    """name -> `spec` of each Traefik Middleware of the platform gateway (none unless gateway mode with
    `routing.gatewayMiddlewares: traefik`).

    - PLATFORM_API: the gateway plugin (cluster/router/plugins-local, mode "api"): 401 without
      `Authorization: Bearer`, never forwarded; names the answering pod in X-Immune-Served-By;
    - PLATFORM_RATE_LIMIT: Traefik's rateLimit (a token bucket per source: `average` requests per
      `period`, `burst` at once; 429 with Retry-After), the source being the client's address (the
      connection's remote address: `ipStrategy` without depth or exclusions);
    - PLATFORM_HEALTH: the plugin in mode "health": the core's readiness as the gateway's GET /health.
    Upstream: doc.traefik.io/traefik/v3.7 middlewares/http/ratelimit and plugins (local plugins).
    """
    if routing.mode != "gateway" or routing.gateway_middlewares != "traefik":
        return {}
    limit = routing.gateway_rate_limit_per_10s

    def plugin(mode: str) -> dict[str, Any]:
        return {"plugin": {GATEWAY_PLUGIN: {"mode": mode, "service": HEALTH_SERVICE_NAME}}}

    return {
        PLATFORM_API: plugin("api"),
        PLATFORM_RATE_LIMIT: {
            "rateLimit": {
                "average": limit,
                "period": f"{RATE_WINDOW_S}s",
                "burst": limit,
                "sourceCriterion": {"ipStrategy": {"depth": 0}},
            }
        },
        PLATFORM_HEALTH: plugin("health"),
    }


def _extension(name: str) -> dict[str, Any]:
    return {
        "type": "ExtensionRef",
        "extensionRef": {"group": TRAEFIK_GROUP, "kind": "Middleware", "name": name},
    }


def served_by(service: str) -> dict[str, Any]:
    """The backendRef filter that names `service` in SERVED_BY_HEADER on every response through it."""
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"set": [{"name": SERVED_BY_HEADER, "value": service}]},
    }


def platform_rules(routing: Routing) -> list[dict[str, Any]]:
    """HTTPRoute rules of ``/api/immune`` (Gateway API v1: PathPrefix matches whole path elements, an
    Exact match beats any prefix, the longest prefix wins, and a URLRewrite ReplacePrefixMatch swaps the
    matched prefix). With the gateway's middlewares: the API rule is checked (bearer, then rate limit),
    its probes only rate-limited, and ``GET /health`` is the aggregated health (the stable Service's
    /health/ready through the health plugin)."""
    guarded = bool(platform_middlewares(routing))
    stable = [{"name": STABLE_SERVICE, "port": SERVICE_PORT}]

    def rewrite(prefix: str, replacement: str, before: list[str]) -> dict[str, Any]:
        return {
            "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "filters": [
                *[_extension(name) for name in before],
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": replacement}},
                },
            ],
            "backendRefs": stable,
        }

    if not guarded:
        return [rewrite(f"{PLATFORM_PREFIX}/health", "/health", []), rewrite(PLATFORM_PREFIX, "/api/v1", [])]
    health = {
        "matches": [{"path": {"type": "Exact", "value": "/health"}, "method": "GET"}],
        "filters": [
            _extension(PLATFORM_HEALTH),
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/health/ready"}},
            },
        ],
        "backendRefs": stable,
    }
    return [
        rewrite(f"{PLATFORM_PREFIX}/health", "/health", [PLATFORM_RATE_LIMIT]),
        rewrite(PLATFORM_PREFIX, "/api/v1", [PLATFORM_API, PLATFORM_RATE_LIMIT]),
        health,
    ]
