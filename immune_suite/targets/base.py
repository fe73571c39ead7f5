"""The `Target` protocol: what the promotion pipeline needs from a place that runs the service.

A target runs two colours of the service (blue and green) behind one weighted entry point. The
pipeline never knows whether colours are supervised processes behind HAProxy (`local`) or Deployments
behind an Ingress (`staging`, `prod`); it only deploys a release to a colour, moves traffic, and asks
for endpoints and health.

Traffic model (the same for every target):
- `active` is the colour serving production traffic (the stable version);
- `canary_weight` is the percentage (0-100) of the main entry point's traffic sent to the *other*
  colour; 0 means all traffic on `active`, 100 means all traffic on the other colour;
- `stable_url` always reaches the active colour only, `preview_url` always reaches the other colour
  only, `ingress_url` is the weighted entry point users see.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from immune_suite.gates.attribution import Attribution

from immune_suite.targets.tokens import Client


class Color(StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Color:
        return Color.GREEN if self is Color.BLUE else Color.BLUE


@dataclass(frozen=True)
class Release:
    """One version of the service as the pipeline ships it.

    `digest` identifies the exact bits: an image digest (`sha256:...`) on Kubernetes, the source
    tree hash on the local stack. `env` carries extra settings for this release only (for example
    `IMMUNE_FAULT_LATENCY_MS` to exercise a regression); targets must apply it to that colour only.
    """

    version: str
    ref: str
    digest: str
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        return cls(
            version=data["version"], ref=data["ref"], digest=data["digest"], env=dict(data.get("env", {}))
        )


@dataclass(frozen=True)
class Endpoints:
    ingress_url: str
    stable_url: str
    preview_url: str
    instance_urls: dict[str, str] = field(default_factory=dict)  # "blue-0" -> URL, where reachable
    baseline_url: str | None = None  # baseline instances only (None: the target has no baseline)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrafficState:
    active: Color
    canary_weight: int  # percent of ingress traffic on `active.other`
    # percent on fresh baseline instances of the stable release (0 unless a baseline runs; the target
    # pairs it with the canary's share, see Target.start_baseline)
    baseline_weight: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"active": self.active.value, "canary_weight": self.canary_weight}
        if self.baseline_weight:
            data["baseline_weight"] = self.baseline_weight
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficState:
        return cls(
            active=Color(data["active"]),
            canary_weight=int(data["canary_weight"]),
            baseline_weight=int(data.get("baseline_weight", 0)),
        )


@dataclass(frozen=True)
class ColorHealth:
    color: Color
    deployed: bool
    live_replicas: int
    ready_replicas: int
    desired_replicas: int
    release: Release | None = None
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.deployed and self.desired_replicas > 0 and self.ready_replicas >= self.desired_replicas

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["color"] = self.color.value
        data["healthy"] = self.healthy
        return data


@dataclass(frozen=True)
class TargetSnapshot:
    """Everything needed to put traffic and colours back as they were (taken before a promotion)."""

    traffic: TrafficState | None
    releases: dict[str, dict[str, Any] | None]  # colour -> Release.to_dict() or None when scaled away
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "traffic": self.traffic.to_dict() if self.traffic else None,
            "releases": self.releases,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetSnapshot:
        traffic = TrafficState.from_dict(data["traffic"]) if data.get("traffic") else None
        releases = dict(data.get("releases", {}))
        return cls(traffic=traffic, releases=releases, extra=dict(data.get("extra", {})))


class TargetError(RuntimeError):
    """A target could not do what was asked (deploy failed, proxy unreachable, ...)."""


@runtime_checkable
class Target(Protocol):
    """What the pipeline asks of a stack. Every method is idempotent: a resumed pipeline repeats calls."""

    name: str

    def ensure_running(self) -> None:
        """Bring up the target's own machinery (supervisor and proxy locally; nothing on a cluster)."""

    def deploy(self, color: Color, release: Release, replicas: int | None = None) -> ColorHealth:
        """Run `release` on `color` and wait until it is ready (or raise `TargetError`)."""

    def set_traffic(self, active: Color, canary_weight: int) -> TrafficState:
        """Route `canary_weight` percent of ingress traffic to `active.other`, the rest to `active`."""

    def traffic(self) -> TrafficState | None:
        """The routing now in force, or None when nothing was ever deployed."""

    def scale_down(self, color: Color) -> None:
        """Stop every replica of `color` (its release stays recorded so `snapshot` can tell)."""

    def endpoints(self) -> Endpoints:
        """URLs for the weighted entry point, the stable colour, the preview colour and each colour."""

    def api_token(self, client: Client = "smoke") -> str | None:
        """A bearer token for `client` holding the least roles it needs (targets/tokens.py), read from a
        secret store, never from plain config; None when the target has no such token."""

    def health(self, color: Color) -> ColorHealth:
        """Replica counts and the release running on `color`."""

    def snapshot(self) -> TargetSnapshot:
        """The current traffic and releases, to hand back to `restore`."""

    def restore(self, snapshot: TargetSnapshot) -> None:
        """Put traffic back as in `snapshot`; colours absent there are scaled down."""

    def chaos_config(self, candidate: Color) -> dict[str, Any]:
        """Configuration handed to Chaos Toolkit experiments (URLs, token, how to kill instances)."""

    def start_baseline(self, release: Release, fresh: bool = False) -> None:
        """Run fresh instances of `release` (the stable one) beside the canary, as many as a colour has.

        Kayenta's baseline: measured against the canary instead of long-running stable, so both are
        equally young. While it runs, `set_traffic` gives it the canary's share of ingress traffic
        (taken from stable's) and `endpoints().baseline_url` reaches it alone. `fresh` restarts
        instances already running; otherwise running, ready instances of `release` are kept.
        Raises `NotImplementedError` on a target without baseline support, `TargetError` when the
        instances do not become ready.
        """

    def stop_baseline(self) -> None:
        """Take the baseline out of traffic and stop it (idempotent; nothing to do when none runs)."""

    def baseline_running(self) -> bool:
        """True when baseline instances run (and so take their share of ingress traffic)."""

    def recorded_release(self, color: Color) -> Release | None:
        """The release the stack itself last recorded on `color`, running or scaled away (None when it
        never ran one): after a promotion, the retired colour's is the release before the current one,
        what `immune-suite rollback` goes back to when no record of this state dir says more (a CI
        runner's state dir starts empty)."""

    def attribution(self) -> Attribution | None:
        """How the ingress names the server behind each response; None when it cannot.

        With None the load gate falls back to the colour the service reports (`X-Immune-Color`),
        which a crashing candidate may not send: only an ingress attribution sees every failure.
        """
