"""Where one local stack keeps its files, and which ports its processes use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from immune_suite.gates.attribution import BASELINE
from immune_suite.stack_config import LocalTargetConfig
from immune_suite.state_dir import state_root
from immune_suite.targets.base import Color


@dataclass(frozen=True)
class StackLayout:
    root: Path
    ports: LocalTargetConfig
    replicas: int

    @classmethod
    def for_stack(cls, stack: str, ports: LocalTargetConfig, replicas: int) -> StackLayout:
        return cls(root=state_root() / "local-stack" / stack, ports=ports, replicas=replicas)

    # files
    @property
    def supervisor_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def programs_dir(self) -> Path:
        return self.root / "programs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def env_dir(self) -> Path:
        return self.root / "env"

    @property
    def haproxy_cfg(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def haproxy_socket(self) -> Path:
        return self.root / "haproxy.sock"

    @property
    def roles_map(self) -> Path:
        return self.root / "roles.map"

    @property
    def routing_file(self) -> Path:
        return self.root / "routing.json"

    @property
    def colors_file(self) -> Path:
        return self.root / "colors.json"

    @property
    def client_tokens_file(self) -> Path:
        """One API token per pipeline client (immune_suite/targets/tokens.py), mode 0600."""
        return self.root / "api-tokens.json"

    @property
    def data_dir(self) -> Path:
        # One data dir for both colours: like a shared database, stable and candidate see the same events.
        return self.root / "data"

    @property
    def releases_dir(self) -> Path:
        return self.root.parent / "releases"

    # processes
    def instance_names(self, color: Color) -> list[str]:
        return [f"{color.value}-{index}" for index in range(self.replicas)]

    def baseline_names(self) -> list[str]:
        """Fresh instances of the stable release started beside a canary (as many as a colour has)."""
        return [f"{BASELINE}-{index}" for index in range(self.replicas)]

    def group_of(self, instance: str) -> str:
        """`blue`, `green` or `baseline`: what an instance (and its HAProxy server) belongs to."""
        return instance.rsplit("-", 1)[0]

    def program_name(self, instance: str) -> str:
        return f"immune-{instance}"

    def instance_port(self, instance: str) -> int:
        offset = {Color.BLUE.value: 10, Color.GREEN.value: 20, BASELINE: 30}[self.group_of(instance)]
        return self.ports.instance_base_port + offset + int(instance.rsplit("-", 1)[1])

    @property
    def baseline_port(self) -> int:
        """The entry point that reaches baseline instances only (the 100 % step loads it)."""
        configured = self.ports.baseline_port
        return configured if configured is not None else self.ports.ingress_port + 3

    @property
    def gateway_port(self) -> int:
        """The platform's API gateway: /api/immune/* to the stable core, aggregated /health (gateway.py)."""
        configured = self.ports.gateway_port
        return configured if configured is not None else self.ports.ingress_port + 4

    def instance_url(self, instance: str) -> str:
        return f"http://127.0.0.1:{self.instance_port(instance)}"
