"""The `local` target: blue and green under supervisord, HAProxy as the Ingress, on this machine.

Everything it starts (supervisord, HAProxy, the service replicas) outlives the pipeline process,
the way a cluster outlives a CI job; the state it needs to be driven again lives in its state dir.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from immune_suite.gates.attribution import BASELINE, Attribution, IngressCounters
from immune_suite.metrics.checks import ColorSelectors
from immune_suite.metrics.factory import provider_url
from immune_suite.metrics.prometheus import PrometheusProvider
from immune_suite.metrics.provider import ProviderError
from immune_suite.paths import REPO_ROOT, SERVICES_DIR
from immune_suite.source import SourceTree
from immune_suite.stack_config import StackConfig
from immune_suite.state_dir import private_dir, read_json, state_root, write_atomic, write_json_atomic
from immune_suite.targets.base import (
    Color,
    ColorHealth,
    Endpoints,
    Release,
    TargetError,
    TargetSnapshot,
    TrafficState,
)
from immune_suite.targets.local.dependencies import services_env
from immune_suite.targets.local.haproxy import HAProxy, attribution
from immune_suite.targets.local.layout import StackLayout
from immune_suite.targets.local.releases import build_release, service_binary
from immune_suite.targets.local.scrape import file_sd_dir, render_targets, selectors
from immune_suite.targets.local.supervisor import ProgramSpec, Supervisor
from immune_suite.targets.tokens import CLIENT_ROLES, Client, hashed_entry

HAPROXY_PROGRAM = "haproxy"
GUARD_PROGRAM = "pipeline-guard"


def launcher_command(env_file: Path) -> list[str]:
    """The argv prefix that starts one instance through immune_suite.targets.local.launch (the service's
    command follows it). `-P` (Python 3.11+): the instance runs in its release's source tree, and without
    it that directory would come first on sys.path, so an older release's `immune_suite` (another layout)
    would be imported instead of this suite's launcher."""
    return [sys.executable, "-P", "-m", "immune_suite.targets.local.launch", str(env_file), "--"]


class LocalTarget:
    name = "local"

    def __init__(self, stack: StackConfig, repo: Path = REPO_ROOT) -> None:
        self.stack = stack
        self.repo = repo
        self.layout = StackLayout.for_stack(stack.name, stack.local, stack.replicas)
        self.supervisor = Supervisor(self.layout)
        self.haproxy = HAProxy(self.layout)

    # -- machinery -------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        private_dir(self.layout.root)
        self.layout.data_dir.mkdir(exist_ok=True)
        private_dir(self.layout.env_dir)
        self.supervisor.ensure_running()
        routing = self.traffic()
        if routing is None:
            # An empty stack: "active" is green, running nothing, so the first release goes to blue,
            # the idle colour, and reaches users only when the pipeline switches to it.
            routing = TrafficState(active=Color.GREEN, canary_weight=0)
            write_json_atomic(self.layout.routing_file, routing.to_dict())
        config_changed = self.haproxy.write_files(routing)
        self.supervisor.write_programs(
            HAPROXY_PROGRAM, [ProgramSpec(HAPROXY_PROGRAM, self.haproxy.command(), self.layout.root)]
        )
        self.supervisor.write_programs(GUARD_PROGRAM, [self._guard_program()])
        self.supervisor.update()
        if config_changed and self.haproxy.is_up():
            # A stack started by an older suite runs an older config (other servers, headers): the
            # same routing, rendered anew, takes effect only when HAProxy reads it again.
            self.supervisor.restart([HAPROXY_PROGRAM])
        ports = f"{self.stack.local.ingress_port}-{self.stack.local.ingress_port + 4}"
        self._wait_for(
            self.haproxy.is_up,
            15,
            f"HAProxy admin socket (is another program on 127.0.0.1 ports {ports}? see "
            f"{self.layout.logs_dir / 'haproxy.log'})",
        )

    def _guard_program(self) -> ProgramSpec:
        """The dead man's switch (see pipeline/guard.py) for this stack, supervised like the rest."""
        stack_file = self.layout.root / "stack.json"
        write_atomic(stack_file, self.stack.model_dump_json(indent=2) + "\n")
        command = [sys.executable, "-m", "immune_suite.cli", "guard", "--stack", str(stack_file)]
        return ProgramSpec(
            GUARD_PROGRAM,
            command,
            self.repo,
            stop_wait_s=5,
            environment={"IMMUNE_STATE_DIR": str(state_root())},
        )

    def shutdown(self) -> None:
        """Stop every process of this stack (the state stays, so the next run starts clean from it)."""
        self.supervisor.shutdown()
        self._publish_scrape_targets(strict=False, running={})  # nothing to scrape any more

    # -- secrets ---------------------------------------------------------------------------------
    def _client_tokens(self) -> dict[str, str]:
        """One token per pipeline client, created once (mode 0600 in the stack's private state)."""
        path = self.layout.client_tokens_file
        tokens: dict[str, str] = read_json(path) if path.exists() else {}
        if set(tokens) != set(CLIENT_ROLES):
            private_dir(self.layout.root)
            tokens = {client: tokens.get(client) or secrets.token_urlsafe(32) for client in CLIENT_ROLES}
            write_json_atomic(path, tokens, mode=0o600)
        return tokens

    def api_token(self, client: Client = "smoke") -> str:
        return self._client_tokens()[client]

    def service_token_entries(self) -> str:
        """`IMMUNE_API_TOKENS` for the instances: digests and roles only, no plain token."""
        tokens = self._client_tokens()
        return ",".join(hashed_entry(tokens[client], roles) for client, roles in CLIENT_ROLES.items())

    # -- colours ---------------------------------------------------------------------------------
    def _colors(self) -> dict[str, Any]:
        path = self.layout.colors_file
        return read_json(path) if path.exists() else {}

    def _save_color(self, color: Color | str, release: Release | None, running: bool) -> None:
        colors = self._colors()
        colors[str(color)] = {"release": release.to_dict() if release else None, "running": running}
        write_json_atomic(self.layout.colors_file, colors)

    def release_on(self, color: Color) -> Release | None:
        entry = self._colors().get(color.value)
        if not entry or not entry.get("running") or not entry.get("release"):
            return None
        return Release.from_dict(entry["release"])

    def recorded_release(self, color: Color) -> Release | None:
        """The release `color` last ran, stopped or not (scale_down keeps it in the colour's entry)."""
        entry = self._colors().get(color.value) or {}
        return Release.from_dict(entry["release"]) if entry.get("release") else None

    def _instance_env(self, color: Color | str, instance: str, release: Release) -> dict[str, str]:
        env = {
            "IMMUNE_INSTANCE_ID": instance,
            "IMMUNE_DEPLOYMENT_COLOR": str(color),
            "IMMUNE_VERSION": release.version,
            "IMMUNE_API_TOKENS": self.service_token_entries(),
            "IMMUNE_DATA_DIR": str(self.layout.data_dir),
        }
        if self.stack.dependencies == "services":
            env.update(services_env())
        env.update(release.env)  # fault injection and other per-release settings, this colour only
        return env

    def _program_specs(self, group: Color | str, instances: list[str], release: Release) -> list[ProgramSpec]:
        """One supervisord program per instance of `release`: the one launch path of every instance."""
        tree = release.digest.removeprefix("git-tree:")
        source = SourceTree(ref=release.ref, commit="", tree=tree, version=release.version)
        release_path = build_release(self.repo, source, self.layout.releases_dir)
        binary = service_binary(release_path)
        specs = []
        for instance in instances:
            env_file = self.layout.env_dir / f"{instance}.json"
            write_json_atomic(env_file, self._instance_env(group, instance, release), mode=0o600)
            port = self.layout.instance_port(instance)
            command = [
                *launcher_command(env_file),
                str(binary),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            specs.append(ProgramSpec(self.layout.program_name(instance), command, release_path / "src"))
        return specs

    def _run_programs(self, group: str, specs: list[ProgramSpec], restart: bool) -> None:
        changed = self.supervisor.write_programs(group, specs)
        self.supervisor.update()
        if not changed and restart:
            # Same release again: `update` leaves unchanged programs alone, but their env files
            # (and so their settings) may have changed; restart them to apply it.
            self.supervisor.restart([s.name for s in specs])

    def deploy(self, color: Color, release: Release, replicas: int | None = None) -> ColorHealth:
        specs = self._program_specs(color, self.layout.instance_names(color), release)
        self._save_color(color, release, running=True)
        self._run_programs(color.value, specs, restart=True)
        self._wait_ready(color.value, self.layout.instance_names(color), release)
        self._publish_scrape_targets(strict=True)
        return self.health(color)

    def _wait_ready(self, group: str, instances: list[str], release: Release) -> None:
        def all_ready() -> bool:
            return all(self._instance_ready(i, release.version) for i in instances)

        try:
            self._wait_for(all_ready, self.stack.local.ready_timeout_s, f"{group} replicas to be ready")
            self._wait_for(lambda: self._proxy_sees_up(group, instances), 15, f"HAProxy to see {group} up")
        except TargetError as error:
            logs = "\n".join(self._log_tail(self.layout.program_name(i)) for i in instances)
            raise TargetError(f"{error}\n{logs}") from error

    # -- baseline (Kayenta): fresh stable instances measured beside the canary ----------------------
    def start_baseline(self, release: Release, fresh: bool = False) -> None:
        instances = self.layout.baseline_names()
        if (
            not fresh
            and self.baseline_release() == release
            and all(self._instance_ready(i) for i in instances)
        ):
            return
        specs = self._program_specs(BASELINE, instances, release)
        self._save_color(BASELINE, release, running=True)
        self._run_programs(BASELINE, specs, restart=True)
        self._wait_ready(BASELINE, instances, release)
        self._publish_scrape_targets(strict=True)
        routing = self.traffic()
        if routing is not None:  # a canary already running gets its baseline partner at once
            self.set_traffic(routing.active, routing.canary_weight)

    def stop_baseline(self) -> None:
        if not self.baseline_running() and not self.layout.programs_dir.joinpath(f"{BASELINE}.conf").exists():
            return
        self._save_color(BASELINE, self.baseline_release(), running=False)
        routing = self.traffic()
        if routing is not None and routing.baseline_weight:
            self.set_traffic(routing.active, routing.canary_weight)  # out of traffic before it stops
        self.supervisor.write_programs(BASELINE, [])
        self.supervisor.update()
        self._publish_scrape_targets(strict=False)

    def baseline_release(self) -> Release | None:
        entry = self._colors().get(BASELINE) or {}
        return Release.from_dict(entry["release"]) if entry.get("release") else None

    def baseline_running(self) -> bool:
        return bool((self._colors().get(BASELINE) or {}).get("running"))

    def attribution(self) -> Attribution:
        return attribution(self.layout)

    def ingress_counters(self) -> dict[str, IngressCounters]:
        return self.haproxy.ingress_counters()

    # -- metrics: what Prometheus scrapes of this stack (scrape.py) --------------------------------
    def metric_selectors(self, color: Color, release: Release) -> ColorSelectors:
        """PromQL matchers of `color`'s replicas running `release`, and of the router's servers for it."""
        router = self.stack.local.router_metrics_port is not None
        return selectors(self.stack.name, color.value, release.version, router)

    def _publish_scrape_targets(self, strict: bool, running: dict[str, str] | None = None) -> None:
        """Rewrite this stack's file_sd file from what runs now (no `metrics:` config: nothing to do).

        Strict on the way up (deploy, baseline): a stack whose canary will need metrics fails its deploy
        with the reason, not its canary with "no data". Not strict on the way down (scale-down,
        baseline stop, rollbacks): Prometheus being away must never stop traffic going back to stable.
        """
        if self.stack.metrics is None:
            return
        if running is None:
            running = {
                group: str(entry["release"]["version"])
                for group, entry in self._colors().items()
                if entry.get("running") and entry.get("release")
            }
        config = self.stack.metrics
        try:
            prometheus = PrometheusProvider(provider_url(config), config.timeout_s, config.attempts)
            directory = file_sd_dir(prometheus.config_yaml())
            # A stopped stack publishes nothing (not even its router): no target left to fail scrapes.
            groups = render_targets(self.layout, self.stack.name, running) if running else []
            # 0644: the Prometheus reading it may run as another user (a system service).
            write_json_atomic(directory / f"{self.stack.name}.json", groups, mode=0o644)
        except (ProviderError, TargetError, OSError) as error:
            if strict:
                raise TargetError(
                    f"cannot publish the stack's scrape targets to Prometheus: {error}"
                ) from error

    def _instance_ready(self, instance: str, version: str | None = None) -> bool:
        url = self.layout.instance_url(instance)
        try:
            ready = httpx.get(f"{url}/health/ready", timeout=2.0)
            if ready.status_code != 200:
                return False
            if version is None:
                return True
            live = httpx.get(f"{url}/health/live", timeout=2.0).json()
            return bool(live.get("version") == version)
        except (httpx.HTTPError, ValueError):
            return False

    def _proxy_sees_up(self, group: str, instances: list[str]) -> bool:
        wanted = set(instances)
        up = {
            row["svname"]
            for row in self.haproxy.stat_rows()
            if row.get("pxname") == group and row.get("svname") in wanted and row.get("status") == "UP"
        }
        return up == wanted

    def _log_tail(self, program: str, lines: int = 15) -> str:
        path = self.layout.logs_dir / f"{program}.log"
        if not path.exists():
            return f"({program}: no log)"
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return f"--- {program} log tail ---\n" + "\n".join(tail)

    def scale_down(self, color: Color) -> None:
        entry = self._colors().get(color.value) or {}
        release = Release.from_dict(entry["release"]) if entry.get("release") else None
        self.supervisor.write_programs(color.value, [])
        self.supervisor.update()
        self._save_color(color, release, running=False)
        self._publish_scrape_targets(strict=False)

    def health(self, color: Color) -> ColorHealth:
        release = self.release_on(color)
        states = self.supervisor.process_states()
        instances = self.layout.instance_names(color)
        running = {name for name, info in states.items() if info.get("statename") == "RUNNING"}
        live = sum(1 for i in instances if self.layout.program_name(i) in running)
        ready = sum(1 for i in instances if live and self._instance_ready(i))
        return ColorHealth(
            color=color,
            deployed=release is not None,
            live_replicas=live,
            ready_replicas=ready,
            desired_replicas=len(instances) if release else 0,
            release=release,
        )

    # -- traffic ---------------------------------------------------------------------------------
    def traffic(self) -> TrafficState | None:
        path = self.layout.routing_file
        return TrafficState.from_dict(read_json(path)) if path.exists() else None

    def set_traffic(self, active: Color, canary_weight: int) -> TrafficState:
        if not 0 <= canary_weight <= 100:
            raise TargetError(f"canary weight {canary_weight} outside 0..100")
        # A running baseline is the canary's partner: the same share, out of stable's (see haproxy.py).
        paired = min(canary_weight, 100 - canary_weight) if self.baseline_running() else 0
        routing = TrafficState(active=active, canary_weight=canary_weight, baseline_weight=paired)
        self.haproxy.apply(routing)
        write_json_atomic(self.layout.routing_file, routing.to_dict())
        return routing

    def live_weights(self) -> dict[str, int]:
        return self.haproxy.live_weights()

    def endpoints(self) -> Endpoints:
        ports = self.layout.ports
        instances = [i for c in (Color.BLUE, Color.GREEN) for i in self.layout.instance_names(c)]
        return Endpoints(
            ingress_url=f"http://127.0.0.1:{ports.ingress_port}",
            stable_url=f"http://127.0.0.1:{ports.stable_port}",
            preview_url=f"http://127.0.0.1:{ports.preview_port}",
            instance_urls={i: self.layout.instance_url(i) for i in instances},
            baseline_url=f"http://127.0.0.1:{self.layout.baseline_port}",
        )

    # -- snapshot --------------------------------------------------------------------------------
    def snapshot(self) -> TargetSnapshot:
        releases = {}
        for color in Color:
            release = self.release_on(color)
            releases[color.value] = release.to_dict() if release else None
        return TargetSnapshot(traffic=self.traffic(), releases=releases)

    def restore(self, snapshot: TargetSnapshot) -> None:
        # Traffic first: users are back on the stable colour before anything slow happens.
        if snapshot.traffic is not None:
            self.set_traffic(snapshot.traffic.active, snapshot.traffic.canary_weight)
        for color in Color:
            wanted = snapshot.releases.get(color.value)
            current = self.release_on(color)
            if wanted is None:
                if current is not None or self.health(color).live_replicas:
                    self.scale_down(color)
            elif current != Release.from_dict(wanted):
                self.deploy(color, Release.from_dict(wanted))
        self.stop_baseline()  # a snapshot never holds a baseline: it lives only as long as a canary

    # -- chaos -----------------------------------------------------------------------------------
    def chaos_config(self, candidate: Color) -> dict[str, Any]:
        endpoints = self.endpoints()
        env = services_env() if self.stack.dependencies == "services" else {}
        candidates = self.layout.instance_names(candidate)
        return {
            "base_url": endpoints.ingress_url,
            "candidate_url": endpoints.preview_url,
            "stable_url": endpoints.stable_url,
            "api_token": self.api_token("chaos"),
            "supervisor_conf": str(self.layout.supervisor_conf),
            "candidate_programs": [self.layout.program_name(i) for i in candidates],
            "candidate_instance_urls": [self.layout.instance_url(i) for i in candidates],
            "services_dir": str(SERVICES_DIR),
            "services_env": env,
            "dependencies": self.stack.dependencies,
        }

    @staticmethod
    def _wait_for(condition: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TargetError(f"timed out after {timeout_s:.0f}s waiting for {what}")
            time.sleep(0.2)
