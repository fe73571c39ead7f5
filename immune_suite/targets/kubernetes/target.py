"""The Kubernetes targets (`staging`, `prod`): the Pulumi program driven through the Automation API.

Rollout state is stack config owned by the pipeline (`settings.rollout.activeColor`,
`settings.rollout.canaryWeight`, and per colour `settings.rollout.images.<colour>`,
`settings.rollout.replicas.<colour>`, `settings.rollout.env.<colour>`, the release it runs
`settings.rollout.releases.<colour>`, and Kayenta's `settings.rollout.baseline`): every change is a config
write followed by `pulumi up`, so the stack's history records each traffic move.

Where that state is read from: the stack itself, never a checked-out file or a runner's directory. The
program exports the rollout it applied (output `rollout`, kept in the Pulumi backend with the stack's
state); `ensure_running` (the start of every run) replaces the project file's `settings.rollout` with it,
so a fresh checkout whose `Pulumi.<stack>.yaml` carries an old committed rollout neither flips traffic
back nor forgets which release serves; the releases on each colour and the traffic are read from the
outputs of the last update (https://www.pulumi.com/docs/iac/concepts/stacks/#outputs). The program turns
that config into the stable Service selector, the canary Ingress weight, each colour's image, count
(0 = scaled away, no autoscaler) and allow-listed environment overrides; its exports give the gates
their URLs. Every write is validated with the program's own settings model first, so a refused value
never reaches the stack.

Render mode (`render_dir` set) turns on the program's `renderYamlToDirectory` option: the Kubernetes
provider writes manifests instead of talking to a cluster, which is how the tests exercise the whole
path without one. With a cluster, readiness is read from the live status (`live.py`: observed
generation, updated and available replicas, the HPA's count), and `deploy` waits for it after `up`.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from immune_infra.config import ConfigError, parse_settings
from immune_infra.immune_app import (
    APP_NAME,
    BASELINE_SERVICE,
    SERVED_BY_HEADER,
    color_labels,
    deployment_name,
)
from immune_infra.monitoring import PROMETHEUS_SERVICE
from pulumi import automation as auto
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
)

from immune_suite.gates.attribution import BASELINE, Attribution, IngressCounters
from immune_suite.metrics.checks import TRAEFIK_5XX, TRAEFIK_RESPONSES, ColorSelectors, label_value
from immune_suite.paths import REPO_ROOT
from immune_suite.stack_config import StackConfig
from immune_suite.targets.base import (
    Color,
    ColorHealth,
    Endpoints,
    Release,
    TargetError,
    TargetSnapshot,
    TrafficState,
)
from immune_suite.targets.kubernetes import router_metrics
from immune_suite.targets.kubernetes.config_tree import has_path, remove_path, set_path
from immune_suite.targets.kubernetes.engine import RENDER_DIR_ENV, engine_environment
from immune_suite.targets.kubernetes.live import (
    LiveStatus,
    deployment_status,
    route_weights,
    service_colours,
    service_url,
)
from immune_suite.targets.tokens import Client, pick_token

PROJECT = "active-immune-core"
SETTINGS = "settings"
ROLLOUT = f"{SETTINGS}.rollout"
# The program's export of the rollout it applied (infra/immune_infra/program.py).
ROLLOUT_OUTPUT = "rollout"
API_TOKENS_KEY = "apiTokens"
# A Pulumi project directory other than the repository (the local cluster's project copy).
PROJECT_DIR_ENV = "IMMUNE_PULUMI_PROJECT_DIR"
VERSION_ENV = "IMMUNE_VERSION"


@dataclass(frozen=True)
class KubernetesTargetOptions:
    """Where the stack lives and how the engine is reached.

    `backend_url` is a Pulumi backend (`file://...` for a local state directory); the passphrase
    secrets provider reads `PULUMI_CONFIG_PASSPHRASE` or `PULUMI_CONFIG_PASSPHRASE_FILE` from
    `extra_env` or the process environment, never from this object's repr.
    """

    stack: str
    project_dir: Path = REPO_ROOT
    backend_url: str | None = None
    render_dir: Path | None = None
    engine_env: Mapping[str, str] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # How long an `up` waits out another update holding the stack (exponential backoff, 1 s .. 30 s):
    # a rollback must not fail just because a guard's or a dying pipeline's update is finishing.
    busy_wait_s: float = 120.0
    # The router's port on 127.0.0.1 (StackConfig.kubernetes.router_port); None: URLs as exported.
    router_port: int | None = None
    # The router's metrics page (StackConfig.kubernetes.router_metrics_url); None: no router counters.
    router_metrics_url: str | None = None
    # How long `deploy` waits for the colour to be rolled out in the live status (its HPA's count included)
    # after `up` returned, polling every `ready_poll_s`.
    ready_timeout_s: float = 300.0
    ready_poll_s: float = 2.0


def _op_counts(summary: Mapping[Any, Any]) -> dict[str, int]:
    """Operation counts keyed by the operation's name ("create", "same", ...), whatever the key type."""
    return {(op.value if isinstance(op, Enum) else str(op)): int(count) for op, count in summary.items()}


@dataclass(frozen=True)
class UpOutcome:
    """What one `pulumi up` changed: operation -> count (e.g. {"update": 1, "same": 60})."""

    changes: dict[str, int]

    @property
    def changed(self) -> bool:
        return any(count for op, count in self.changes.items() if op != "same")


def options_for_stack(stack: StackConfig) -> KubernetesTargetOptions:
    """Options for a pipeline stack (stacks/<name>.yaml): the repository's Pulumi project unless
    IMMUNE_PULUMI_PROJECT_DIR names another (scripts/cluster-deploy.sh's project copy), the backend the
    user is logged in to unless PULUMI_BACKEND_URL says otherwise, secrets from the environment."""
    pulumi_stack = stack.pulumi_stack or stack.name
    render_root = os.environ.get(RENDER_DIR_ENV)
    project = os.environ.get(PROJECT_DIR_ENV)
    return KubernetesTargetOptions(
        stack=pulumi_stack,
        project_dir=Path(project) if project else REPO_ROOT,
        backend_url=os.environ.get("PULUMI_BACKEND_URL"),
        render_dir=Path(render_root) / pulumi_stack if render_root else None,
        router_port=stack.kubernetes.router_port,
        router_metrics_url=(
            str(stack.kubernetes.router_metrics_url) if stack.kubernetes.router_metrics_url else None
        ),
    )


class KubernetesTarget:
    """A `Target` for a Kubernetes stack of the Pulumi program in `project_dir`.

    Built from `KubernetesTargetOptions`, or from a pipeline `StackConfig` (what
    `immune_suite.targets.factory.make_target` passes).
    """

    def __init__(
        self, config: KubernetesTargetOptions | StackConfig, log: Callable[[str], None] | None = None
    ) -> None:
        options = config if isinstance(config, KubernetesTargetOptions) else options_for_stack(config)
        if options.stack not in ("staging", "prod"):
            raise TargetError(f"unknown Kubernetes stack {options.stack!r} (staging or prod)")
        self.options = options
        self.name = options.stack
        self._log = log or (lambda _line: None)
        self._stack: auto.Stack | None = None
        # The Kubernetes provider writes its kubeconfig into a new temporary file each time it is
        # configured (for Helm, pulumi-kubernetes pkg/provider) and never removes it: the engine gets a
        # private TMPDIR, removed with this object or at exit.
        self._scratch = tempfile.TemporaryDirectory(prefix="immune-pulumi-")

    # -- the stack -------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(self.options.engine_env if self.options.engine_env is not None else engine_environment())
        if self.options.backend_url:
            env["PULUMI_BACKEND_URL"] = self.options.backend_url
        env.update(self.options.extra_env)
        env.setdefault("TMPDIR", self._scratch.name)
        return env

    def stack(self) -> auto.Stack:
        """Select the stack, creating it (passphrase secrets provider) on first use."""
        if self._stack is None:
            env = self._env()
            engine_dir = env.get("PULUMI_ENGINE_DIR")
            command = auto.PulumiCommand(root=engine_dir) if engine_dir else None
            workspace_opts = auto.LocalWorkspaceOptions(
                work_dir=str(self.options.project_dir),
                env_vars=env,
                secrets_provider="passphrase",
                pulumi_command=command,
            )
            try:
                self._stack = auto.create_or_select_stack(
                    self.options.stack, work_dir=str(self.options.project_dir), opts=workspace_opts
                )
            except auto.errors.CommandError as exc:
                raise TargetError(f"could not select stack {self.options.stack}: {exc}") from exc
            if self.options.render_dir is not None:
                self._set({f"{SETTINGS}.renderYamlToDirectory": str(self.options.render_dir)})
        return self._stack

    def _set(self, values: Mapping[str, str]) -> None:
        stack = self._stack if self._stack is not None else self.stack()
        stack.set_all_config({key: auto.ConfigValue(value=value) for key, value in values.items()}, path=True)

    def _get(self, key: str) -> str | None:
        try:
            return self.stack().get_config(key, path=True).value
        except auto.errors.CommandError:
            return None

    def _settings_tree(self) -> dict[str, Any]:
        """The stack's `settings` object as stored (no secrets live there: they are separate keys)."""
        try:
            raw = self.stack().get_config(SETTINGS).value
        except auto.errors.CommandError as exc:
            raise TargetError(f"stack {self.name} has no {SETTINGS} config: {exc}") from exc
        tree = json.loads(raw)
        if not isinstance(tree, dict):
            raise TargetError(f"stack {self.name}: {SETTINGS} is not an object")
        return tree

    def _rollout_tree(self) -> dict[str, Any]:
        rollout = self._settings_tree().get("rollout")
        return rollout if isinstance(rollout, dict) else {}

    def _write_rollout(self, values: Mapping[str, str], removed: tuple[str, ...] = ()) -> None:
        """Remove then set rollout keys (full `settings.` paths), after checking the result with the
        program's settings model: a refused value is reported here and never written to the stack."""
        tree = self._settings_tree()
        candidate = {SETTINGS: copy.deepcopy(tree)}
        for key in removed:
            remove_path(candidate, key)
        for key, value in values.items():
            set_path(candidate, key, value)
        try:
            parse_settings(candidate[SETTINGS])
        except ConfigError as exc:
            raise TargetError(f"refused rollout config for {self.name}:\n{exc}") from None
        present = [key for key in removed if has_path({SETTINGS: tree}, key)]
        if present:
            try:
                self.stack().remove_all_config(present, path=True)
            except auto.errors.CommandError as exc:
                raise TargetError(f"could not remove {present} on {self.name}: {exc}") from exc
        if values:
            self._set(values)

    def up(self) -> UpOutcome:
        """`pulumi up` with the config as it stands; raises `TargetError` on failure.

        An update refused because another one holds the stack (`ConcurrentUpdateError`) is retried
        with exponential backoff for `busy_wait_s`: the config is already written, so repeating the
        `up` converges on it (https://www.pulumi.com/docs/iac/concepts/state-and-backends/).
        """
        stack = self.stack()

        def attempt() -> auto.UpResult:
            # show_secrets=False: the summary we keep never holds decrypted config.
            return stack.up(on_output=self._log, color="never", suppress_progress=True, show_secrets=False)

        def waiting(state: Any) -> None:
            self._log(f"stack {self.name} is busy with another update; retry {state.attempt_number}")

        retry = Retrying(
            retry=retry_if_exception_type(auto.errors.ConcurrentUpdateError),
            stop=stop_after_delay(self.options.busy_wait_s),
            wait=wait_exponential(multiplier=1, max=30),
            before_sleep=waiting,
            reraise=True,
        )
        try:
            result = retry(attempt)
        except auto.errors.CommandError as exc:
            raise TargetError(f"pulumi up failed on {self.name}: {exc}") from exc
        return UpOutcome(changes=_op_counts(result.summary.resource_changes or {}))

    def recover_stack(self) -> dict[str, Any]:
        """Bring a stack whose `pulumi up` was killed back to a state an `up` can converge from.

        A killed update leaves the stack locked and its checkpoint with pending operations, and the
        next `up` fails. In order (Pulumi's recovery of an interrupted update,
        https://www.pulumi.com/docs/iac/concepts/state-and-backends/#interrupted-updates):
        `pulumi cancel` removes the lock (its error, e.g. "no update in progress" on a service backend, is
        reported, not raised); the
        checkpoint's `pending_operations` are dropped (`stack export` / `stack import`); with a
        cluster, `pulumi refresh --clear-pending-creates` reads every object back (render mode has no
        cluster to read). Returns {"cancel": "ok" | <its error>, "pending_operations_cleared": n,
        "refresh": {operation: count} | "skipped: render mode", "repaired": [files]}. Raises TargetError
        when the state cannot be read or written or the refresh fails.
        """
        # First: a truncated checkpoint-attributes file makes even selecting the stack fail.
        report: dict[str, Any] = {"repaired": self._repair_file_backend()}
        stack = self.stack()
        try:
            stack.cancel()
            report["cancel"] = "ok"
        except auto.errors.CommandError as exc:
            report["cancel"] = _last_line(str(exc))
        try:
            state = stack.export_stack()
            deployment = dict(state.deployment or {})
            pending = list(deployment.get("pending_operations") or [])
            if pending:
                deployment["pending_operations"] = []
                stack.import_stack(auto.Deployment(version=state.version, deployment=deployment))
        except auto.errors.CommandError as exc:
            raise TargetError(
                f"could not clear the pending operations of {self.name}: {_last_line(str(exc))}"
            ) from exc
        report["pending_operations_cleared"] = len(pending)
        if self.options.render_dir is not None:
            report["refresh"] = "skipped: render mode"
        else:
            try:
                result = stack.refresh(
                    clear_pending_creates=True, on_output=self._log, color="never", suppress_progress=True
                )
            except auto.errors.CommandError as exc:
                raise TargetError(f"pulumi refresh failed on {self.name}: {_last_line(str(exc))}") from exc
            report["refresh"] = _op_counts(result.summary.resource_changes or {})
        self._log(f"stack {self.name} recovered: {report}")
        return report

    def _repair_file_backend(self) -> list[str]:
        """A file backend's stack files a kill left unreadable: the checkpoint's `.attrs` sidecar (blob
        attributes, written beside the checkpoint without a rename) truncated to nothing, which makes
        every command fail with "failed to load checkpoint: EOF". Such a sidecar is removed (the
        checkpoint reads without one); the names removed. Other backends: nothing to do here."""
        url = self._env().get("PULUMI_BACKEND_URL", "")
        if not url.startswith("file://"):
            return []
        stacks = Path(urllib.parse.urlsplit(url).path) / ".pulumi" / "stacks" / PROJECT
        removed = []
        for attrs in sorted(stacks.glob(f"{self.name}.json*.attrs")):
            try:
                json.loads(attrs.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                attrs.unlink()
                removed.append(attrs.name)
        return removed

    def preview(self, policy_packs: list[str] | None = None) -> UpOutcome:
        stack = self.stack()
        try:
            result = stack.preview(on_output=self._log, color="never", policy_packs=policy_packs)
        except auto.errors.CommandError as exc:
            raise TargetError(f"pulumi preview failed on {self.name}: {exc}") from exc
        return UpOutcome(changes=_op_counts(result.change_summary or {}))

    def outputs(self) -> dict[str, Any]:
        return {name: item.value for name, item in self.stack().outputs().items()}

    # -- Target: machinery -----------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Select the stack (checks the engine and the backend) and adopt the rollout it last applied.

        Nothing of ours runs beside a cluster. Called at the start of every run, under the stack's lock.
        """
        self.stack()
        self._adopt_deployed_rollout()

    def _deployed_rollout(self) -> dict[str, Any]:
        """The rollout the last update applied (the `rollout` output); {} for a stack never deployed."""
        value = self.outputs().get(ROLLOUT_OUTPUT)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise TargetError(f"stack {self.name}: output {ROLLOUT_OUTPUT!r} is not an object")
        return value

    def _adopt_deployed_rollout(self) -> None:
        """Replace the project file's `settings.rollout` with the deployed one, when they differ.

        A stack never deployed keeps the file's rollout: that is its starting point.
        """
        deployed = self._deployed_rollout()
        if not deployed or _leaves(deployed) == _leaves(self._rollout_tree()):
            return
        values = {f"{ROLLOUT}.{path}": value for path, value in _leaves(deployed).items()}
        self._write_rollout(values, removed=(ROLLOUT,))
        self._log(f"stack {self.name}: rollout config taken from the last update (the file's differed)")

    def api_token(self, client: Client = "smoke") -> str | None:
        """The `apiTokens` entry (`<token>[:<roles>]`) with the least roles that `client` needs."""
        raw = self._get(API_TOKENS_KEY)
        if not raw:
            return None
        return pick_token([entry for entry in raw.split(",") if entry.strip()], client)

    # -- Target: releases ------------------------------------------------------------------------
    def release_on(self, color: Color) -> Release | None:
        """The release the last update deployed on `color` (the stack's `rollout` output), or None."""
        deployed = self._deployed_rollout()
        entry = (deployed.get("releases") or {}).get(color.value)
        if not entry:
            return None
        env = dict((deployed.get("env") or {}).get(color.value) or {})
        env.pop(VERSION_ENV, None)  # set by deploy from the release itself, not part of its overrides
        return Release(version=entry["version"], ref=entry["ref"], digest=entry["digest"], env=env)

    def recorded_release(self, color: Color) -> Release | None:
        """`release_on`: the stack keeps a scaled-away colour's release recorded (its image pinned too)."""
        return self.release_on(color)

    def image_for(self, release: Release) -> str:
        """The image reference for a release: the program's repository pinned to the release digest."""
        if not release.digest.startswith("sha256:"):
            raise TargetError(f"release {release.version} has no image digest (got {release.digest!r})")
        repository = self._get(f"{SETTINGS}.imageBuild.repository")
        if not repository:
            raise TargetError(f"stack {self.name} has no settings.imageBuild.repository to pin the digest to")
        return f"{repository}@{release.digest}"

    def deploy(self, color: Color, release: Release, replicas: int | None = None) -> ColorHealth:
        """Run `release` on `color`: its image, its count and its env overrides, in one `up`.

        `replicas` None leaves the count to the app default (HPA within `settings.app.replicas`); N sets
        the colour's HPA minimum to N. `release.env` replaces the colour's overrides; only the program's
        allow-list (fault injection, log level, version) is accepted, anything else is refused before
        the stack is touched, never dropped (a dropped fault would make a regression canary look healthy).
        """
        if replicas is not None and replicas < 1:
            raise TargetError(f"deploy needs at least one replica (got {replicas}); use scale_down for 0")
        prefix = f"{ROLLOUT}.{{}}.{color.value}"
        values = {prefix.format("images"): self.image_for(release)}
        removed = [prefix.format("env")]
        if replicas is None:
            removed.append(prefix.format("replicas"))
        else:
            values[prefix.format("replicas")] = str(replicas)
        # The smoke and post checks require the service to report the release's version
        # (X-Immune-Version); the image alone does not know which release it was promoted as.
        env = {VERSION_ENV: release.version, **release.env}
        values.update({f"{prefix.format('env')}.{name}": value for name, value in sorted(env.items())})
        values.update(_release_values(color, release))
        self._write_rollout(values, tuple(removed))
        self.up()
        if self.options.render_dir is None:
            self._await_rollout(color)
        return self.health(color)

    def _await_rollout(self, color: Color) -> LiveStatus:
        """Poll the colour's live status until it is rolled out at its full count (the HPA's included),
        for `ready_timeout_s`; the last status either way (`deploy` then reports it, healthy or not)."""
        wanted = self.desired_replicas(color)

        def done(status: LiveStatus) -> bool:
            return status.complete and status.ready >= wanted

        retry = Retrying(
            # A transient API error is polled through too; at the deadline the last one is raised.
            retry=retry_if_result(lambda status: not done(status)) | retry_if_exception_type(TargetError),
            stop=stop_after_delay(self.options.ready_timeout_s),
            wait=wait_fixed(self.options.ready_poll_s),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        status: LiveStatus = retry(self._live, color)
        self._log(f"{color.value}: {status.detail}")
        return status

    def _live(self, color: Color) -> LiveStatus:
        return deployment_status(
            deployment_name(color.value), self._namespace(), self._env().get("KUBECONFIG")
        )

    def scale_down(self, color: Color) -> None:
        """Scale `color` away: traffic off it first (its own `up`), then `replicas: 0` and no HPA.

        Refused for the active colour: it serves production traffic, and the pipeline retires a colour
        only after switching away from it. Idempotent: a colour already at 0 is an `up` that changes
        nothing.
        """
        rollout = self._rollout_tree()
        if rollout.get("activeColor") == color.value:
            raise TargetError(
                f"{color.value} is the active colour on {self.name}: switch traffic before scaling it away"
            )
        current = self.traffic()
        if current is not None and current.active is not color and current.canary_weight != 0:
            self.set_traffic(current.active, 0)
        self._write_rollout({f"{ROLLOUT}.replicas.{color.value}": "0"})
        self.up()

    def desired_replicas(self, color: Color) -> int:
        """The colour's declared count: its rollout override, else the app's HPA minimum."""
        tree = self._settings_tree()
        override = (tree.get("rollout", {}).get("replicas") or {}).get(color.value)
        if override is not None:
            return int(override)
        return int(tree.get("app", {}).get("replicas", {}).get("min", 0))

    def health(self, color: Color) -> ColorHealth:
        release = self.release_on(color)
        desired = self.desired_replicas(color)
        deployed = release is not None and desired > 0  # replicas 0: scaled away
        if self.options.render_dir is not None:
            # Nothing runs in render mode: report the declared replicas, none of them live.
            return ColorHealth(
                color=color,
                deployed=deployed,
                live_replicas=0,
                ready_replicas=0,
                desired_replicas=desired,
                release=release,
                detail=f"render mode: manifests in {self.options.render_dir}",
            )
        if not deployed:
            return ColorHealth(color, False, 0, 0, desired, release, detail="no release running")
        live = self._live(color)
        return ColorHealth(
            color=color,
            deployed=True,
            live_replicas=live.live,
            ready_replicas=live.ready,
            desired_replicas=max(desired, live.desired),
            release=release,
            detail=live.detail,
        )

    # -- Target: traffic -------------------------------------------------------------------------
    def traffic(self) -> TrafficState | None:
        outputs = self.outputs()
        active = outputs.get("activeColor")
        weight = outputs.get("canaryWeight")
        if active is None or weight is None:
            return None
        paired = int(outputs.get("baselineWeight") or 0)  # HTTPRoute share only; nginx routes none
        return TrafficState(active=Color(str(active)), canary_weight=int(weight), baseline_weight=paired)

    # -- metrics: what the stack's own Prometheus scrapes (immune_infra.monitoring) -------------------
    def metric_selectors(self, color: Color, release: Release) -> ColorSelectors:
        """PromQL matchers of `color`'s replicas: the bundled Prometheus's app job labels each target with
        its colour and namespace (one colour runs one release at a time, so the colour names it).

        Router series when the stack's Prometheus scrapes the router (output `routerScrapeJob`,
        `monitoring.routerScrapeTarget`): Traefik counts per Service, so the colour's series are those
        of the Services that select it now (live selectors; during a canary the preview Service, and
        the stable host's canary backend in nginx mode: router_metrics.service_regex)."""
        outputs = self.outputs()
        namespace = self._namespace(outputs)
        scope = f"job={label_value(APP_NAME)},namespace={label_value(namespace)}"
        app = f"{scope},color={label_value(color.value)}"
        job = outputs.get("routerScrapeJob")
        if not job or self.options.render_dir is not None:
            return ColorSelectors(color=color.value, release=release.version, app=app, targets=(app,))
        colours = service_colours(namespace, self._env().get("KUBECONFIG"))
        services = sorted(service for service, owner in colours.items() if owner == color.value)
        router_scope = f"job={label_value(str(job))},namespace={label_value(namespace)}"
        regex = router_metrics.service_regex(namespace, services)
        return ColorSelectors(
            color=color.value,
            release=release.version,
            app=app,
            targets=(app, router_scope),  # both scraped after the window
            router=f"{router_scope},service=~{label_value(regex)}",
            router_metric=TRAEFIK_RESPONSES,
            router_5xx=TRAEFIK_5XX,
        )

    def metrics_url(self) -> str:
        """The stack's Prometheus as this machine reaches it: the bundled one's Service ClusterIP (the
        exported `prometheusUrl` is a cluster DNS name, which a node without cluster DNS cannot
        resolve), else the exported URL (operator mode: the platform's Prometheus). TargetError when
        neither can be had."""
        outputs = self.outputs()
        if outputs.get("monitoringMode") == "operator":
            if not outputs.get("prometheusUrl"):
                raise TargetError(f"stack {self.name} exports no prometheusUrl")
            return str(outputs["prometheusUrl"])
        return service_url(PROMETHEUS_SERVICE, self._namespace(outputs), self._env().get("KUBECONFIG"))

    def _namespace(self, outputs: Mapping[str, Any] | None = None) -> str:
        """The stack's namespace, from `outputs` when the caller already read them (each read of the
        outputs runs the engine)."""
        namespace = str((self.outputs() if outputs is None else outputs).get("namespace") or "")
        if not namespace:
            raise TargetError(f"stack {self.name} exports no namespace: deploy it first")
        return namespace

    def live_weights(self) -> dict[str, int] | None:
        """The stable host's weights per `<colour>-<Service>` read back from the live routing objects
        (HTTPRoute or canary Ingress, and the Services' selectors); None in render mode (nothing runs).
        The pipeline compares them with what it set after every move back to stable (restore.py)."""
        if self.options.render_dir is not None:
            return None
        outputs = self.outputs()
        routing_mode = str(outputs.get("routingMode"))
        return route_weights(self._namespace(outputs), routing_mode, self._env().get("KUBECONFIG"))

    def set_traffic(self, active: Color, canary_weight: int) -> TrafficState:
        if not 0 <= canary_weight <= 100:
            raise TargetError(f"canary weight {canary_weight} outside 0..100")
        self._set({f"{ROLLOUT}.activeColor": active.value, f"{ROLLOUT}.canaryWeight": str(canary_weight)})
        self.up()
        return self.traffic() or TrafficState(active=active, canary_weight=canary_weight)

    def endpoints(self) -> Endpoints:
        outputs = self.outputs()
        port = self.options.router_port
        try:
            urls = {key: str(outputs[key]) for key in ("canaryUrl", "stableUrl", "previewUrl")}
        except KeyError as exc:
            raise TargetError(f"stack {self.name} does not export {exc.args[0]} (run up first)") from exc
        baseline = str(outputs["baselineUrl"]) if outputs.get("baselineUrl") else None
        if port is not None:
            # Through the router on this machine: same host names (the router matches on them), its port.
            urls = {key: _with_port(url, port) for key, url in urls.items()}
            if baseline is not None:
                # Its own host through the router when the stack routes one (routing.baselineHost),
                # else its Service, which only a cluster node reaches.
                baseline = (
                    _with_port(baseline, port)
                    if outputs.get("baselineHost")
                    else self._node_url(baseline, self._namespace(outputs))
                )
        return Endpoints(
            ingress_url=urls["canaryUrl"],
            stable_url=urls["stableUrl"],
            preview_url=urls["previewUrl"],
            baseline_url=baseline,
        )

    def _node_url(self, url: str, namespace: str) -> str | None:
        """`url` (`http://<service>.<namespace>.svc.cluster.local[:port]/<path>`, a cluster DNS name) as
        this node reaches it without cluster DNS: the Service's ClusterIP (kube-proxy), same path.
        None while the Service does not exist (a baseline not started)."""
        parts = urllib.parse.urlsplit(url)
        service = (parts.hostname or "").split(".")[0]
        try:
            base = service_url(service, namespace, self._env().get("KUBECONFIG"))
        except TargetError as error:
            self._log(f"{service} not reachable from this machine: {error}")
            return None
        return base + parts.path

    # -- Target: snapshot ------------------------------------------------------------------------
    def snapshot(self) -> TargetSnapshot:
        """Traffic, releases, and each colour's rollout config as stored (images, replicas, env)."""
        rollout = self._rollout_tree()
        releases: dict[str, dict[str, Any] | None] = {}
        # What each colour's record says, scaled away or not: restored with its image, so a rolled back
        # promotion leaves the release before the current one recorded (`recorded_release`).
        recorded: dict[str, dict[str, Any] | None] = {}
        for color in Color:
            release = self.release_on(color)  # reads the stack's outputs: once per colour
            recorded[color.value] = release.to_dict() if release else None
            scaled_away = self.desired_replicas(color) == 0
            releases[color.value] = recorded[color.value] if not scaled_away else None

        def section(key: str) -> dict[str, Any]:
            value = rollout.get(key)
            return value if isinstance(value, dict) else {}

        extra: dict[str, Any] = {
            "images": {color.value: section("images").get(color.value) for color in Color},
            # None: the app default; a number (0 = scaled away) is written back as it was.
            "replicas": {color.value: section("replicas").get(color.value) for color in Color},
            "env": {color.value: dict(section("env").get(color.value) or {}) for color in Color},
            "recorded": recorded,
        }
        return TargetSnapshot(traffic=self.traffic(), releases=releases, extra=extra)

    def restore(self, snapshot: TargetSnapshot) -> None:
        """Put the rollout config back exactly as the snapshot recorded it.

        Steps so that no pod is removed while it still gets traffic, and so that traffic does not wait
        for anything slower: first traffic alone (its own `up`, skipped when it already is as recorded,
        as after the pipeline's rollback moved it); then images, env and every count that is not 0
        (one `up`); then the colours the snapshot had scaled away go back to 0 (a third `up`, only when
        needed). Every step is idempotent, so a restore that fails part way is simply called again (the
        pipeline retries it with backoff; `up` itself waits out a busy stack). Keys a snapshot lacks
        (taken by an older target) are left as they are.
        """
        if snapshot.traffic is not None and self.traffic() != snapshot.traffic:
            self.set_traffic(snapshot.traffic.active, snapshot.traffic.canary_weight)
        values: dict[str, str] = {}
        removed: list[str] = []
        scale_away: dict[str, str] = {}
        stored_replicas = self._rollout_tree().get("replicas") or {}
        if snapshot.traffic is not None:
            values[f"{ROLLOUT}.activeColor"] = snapshot.traffic.active.value
            values[f"{ROLLOUT}.canaryWeight"] = str(snapshot.traffic.canary_weight)
        for color, image in (snapshot.extra.get("images") or {}).items():
            if image:
                values[f"{ROLLOUT}.images.{color}"] = str(image)
        for color, count in (snapshot.extra.get("replicas") or {}).items():
            key = f"{ROLLOUT}.replicas.{color}"
            if count is None:
                removed.append(key)
            elif int(count) == 0:
                if stored_replicas.get(color) not in (0, "0"):  # already away: no second `up`
                    scale_away[key] = "0"
            else:
                values[key] = str(count)
        for color, env in (snapshot.extra.get("env") or {}).items():
            removed.append(f"{ROLLOUT}.env.{color}")
            values.update(
                {f"{ROLLOUT}.env.{color}.{name}": str(value) for name, value in sorted(env.items())}
            )
        recorded = snapshot.extra.get("recorded") or {}
        for color in Color:  # the releases as recorded: none where none ran, kept where a colour is away
            wanted = snapshot.releases.get(color.value) or recorded.get(color.value)
            removed.append(f"{ROLLOUT}.releases.{color.value}")
            if wanted:
                values.update(_release_values(color, Release.from_dict(wanted)))
        # A snapshot never holds a baseline: it lives only as long as a canary (as on the local stack).
        removed.append(f"{ROLLOUT}.baseline")
        self._write_rollout(values, tuple(removed))
        self.up()
        if scale_away:
            self._write_rollout(scale_away)
            self.up()

    # -- Target: chaos ---------------------------------------------------------------------------
    def chaos_config(self, candidate: Color) -> dict[str, Any]:
        """The experiments' configuration (chaos/experiments/kubernetes/): the URLs through the router,
        the stack's namespace, the candidate's pod selector (its colour's `api` pods, not the migration
        Job's) and Deployment. The `chaos` process reaches the API with KUBECONFIG from the environment
        (chaostoolkit-kubernetes' `create_k8s_api_client`)."""
        endpoints = self.endpoints()
        outputs = self.outputs()
        selector = ",".join(f"{key}={value}" for key, value in color_labels(candidate.value).items())
        return {
            "base_url": endpoints.ingress_url,
            "candidate_url": endpoints.preview_url,
            "stable_url": endpoints.stable_url,
            "api_token": self.api_token("chaos"),
            "namespace": outputs.get("namespace"),
            "candidate_label_selector": selector,
            "candidate_deployment": deployment_name("green" if candidate is Color.GREEN else "blue"),
        }

    # -- Target: baseline (Kayenta) and attribution ---------------------------------------------
    def start_baseline(self, release: Release, fresh: bool = False) -> None:
        """Run `settings.rollout.baseline` = {the release's pinned image, the active colour's count}.

        The program renders `immune-core-baseline` (Deployment + Service) and, with HTTPRoutes, gives
        it the canary's share out of stable's; with an nginx canary Ingress it stays out of the
        weighted route (one canary backend only) and is reached through its Service. A baseline of
        the same image and count is kept (no `up`) unless `fresh`, which deletes it first (its own
        `up`) so every pod is new. Raises `TargetError` for a release without a digest or a refused
        config (the stack is then untouched).
        """
        image = self.image_for(release)
        count = self._active_replicas()
        wanted = {"image": image, "replicas": str(count)}
        key = f"{ROLLOUT}.baseline"
        current = self._rollout_tree().get("baseline")
        same = isinstance(current, dict) and {k: str(v) for k, v in current.items()} == wanted
        if same and not fresh:
            return
        if same:  # fresh: the same config again would roll nothing, so take the old pods away first
            self.stop_baseline()
        self._write_rollout({f"{key}.image": image, f"{key}.replicas": str(count)}, (key,))
        self.up()

    def _active_replicas(self) -> int:
        """As many pods as the active colour has declared (at least one)."""
        active = self._rollout_tree().get("activeColor")
        if active is None:
            raise TargetError(f"stack {self.name} has no settings.rollout.activeColor")
        return max(1, self.desired_replicas(Color(str(active))))

    def stop_baseline(self) -> None:
        """Remove `settings.rollout.baseline` and `up` (idempotent: no key, no `up`)."""
        key = f"{ROLLOUT}.baseline"
        if "baseline" not in self._rollout_tree():
            return
        self._write_rollout({}, (key,))
        self.up()

    def baseline_running(self) -> bool:
        """True while the stack's config declares baseline pods (the provider awaited them at `up`)."""
        baseline = self._rollout_tree().get("baseline")
        return isinstance(baseline, dict) and int(baseline.get("replicas") or 0) > 0

    def attribution(self) -> Attribution | None:
        """Gateway mode: the router names the Service behind every response it sends, its own
        502/503/504 included (`X-Immune-Served-By`, set by each backendRef's filter: immune_infra
        immune_app.served_by), and the Services' live selectors say which colour that is; the baseline
        Service is the baseline. None in nginx mode (ingress-nginx names no upstream in responses:
        samples take the colour the service reports) and in render mode (nothing runs)."""
        if self.options.render_dir is not None:
            return None
        outputs = self.outputs()
        if outputs.get("routingMode") != "gateway":
            return None
        colours = service_colours(self._namespace(outputs), self._env().get("KUBECONFIG"))
        return Attribution(header=SERVED_BY_HEADER, servers={**colours, BASELINE_SERVICE: BASELINE})

    def ingress_counters(self) -> dict[str, IngressCounters] | None:
        """Per group (`blue`, `green`, `baseline`): the router's cumulative counters of the Services
        that select it now (router_metrics.py), None without a router metrics URL or in render mode.
        Raises TargetError when the page cannot be read or carries no per-service counters."""
        url = self.options.router_metrics_url
        if url is None or self.options.render_dir is not None:
            return None
        namespace = self._namespace()
        counters = router_metrics.per_service(router_metrics.fetch(url), namespace)
        colours = service_colours(namespace, self._env().get("KUBECONFIG"))
        return router_metrics.per_group(counters, colours)


def _last_line(text: str) -> str:
    """The last non-empty line of an engine error (its summary), at most 300 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else text)[:300]


def _release_values(color: Color, release: Release) -> dict[str, str]:
    """Config paths recording `release` as what `color` runs (its env overrides live in rollout.env)."""
    prefix = f"{ROLLOUT}.releases.{color.value}"
    return {
        f"{prefix}.version": release.version,
        f"{prefix}.ref": release.ref,
        f"{prefix}.digest": release.digest,
    }


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`tree` as `a.b.c` paths to string leaves (config stores strings; an output keeps numbers)."""
    leaves: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            leaves.update(_leaves(value, f"{path}."))
        elif value is not None:
            leaves[path] = str(value).lower() if isinstance(value, bool) else str(value)
    return leaves


def _with_port(url: str, port: int) -> str:
    """`url` with its port set to `port` (http://host/api -> http://host:port/api)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None:
        raise TargetError(f"exported URL {url!r} has no host")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


def describe(target: KubernetesTarget) -> str:
    """A one-line, secret-free description for logs."""
    return json.dumps(
        {
            "stack": target.name,
            "render_dir": str(target.options.render_dir or ""),
            "backend": target.options.backend_url or os.environ.get("PULUMI_BACKEND_URL", ""),
        }
    )
