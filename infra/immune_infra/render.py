"""Run the real program (infra/__main__.py) under Pulumi's mocks and collect what it declares.

`render_stack("staging")` reads the real `Pulumi.staging.yaml`, applies optional overrides to the
settings object, injects secret config values (render-only ones unless given), runs the program in
this process with a recording mock monitor, and returns the Kubernetes manifests (the resources'
inputs, exactly as the provider would receive them), the stack exports, and each resource's
dependencies. Tests, the bench and the security gate's checkov scan all use it.

Each call gets a fresh root Stack, a fresh mock monitor and fresh config, so several stacks can be
rendered one after another in the same process.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from immune_infra.config import PROJECT_NAME, REGISTRY_PASSWORD_KEY, SECRET_KEYS, SETTINGS_KEY
from immune_infra.paths import REPOSITORY_ROOT

PROGRAM = REPOSITORY_ROOT / "infra" / "__main__.py"
FAKE_DIGEST = "sha256:" + "0" * 64
# Every Python dynamic provider's resources have this type; their own inputs tell them apart.
DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"


@dataclass(frozen=True)
class RecordedResource:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    dependencies: tuple[str, ...]
    parent: str
    provider: str
    retain_on_delete: bool = False


@dataclass
class RenderedStack:
    stack: str
    resources: list[RecordedResource] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)

    @property
    def manifests(self) -> list[dict[str, Any]]:
        """Kubernetes objects: every resource of the kubernetes package except the provider itself."""
        return [
            res.inputs
            for res in self.resources
            if res.type.startswith("kubernetes:") and "kind" in res.inputs and "apiVersion" in res.inputs
        ]

    def find(self, kind: str, name: str) -> dict[str, Any]:
        for manifest in self.manifests:
            if manifest["kind"] == kind and manifest.get("metadata", {}).get("name") == name:
                return manifest
        raise KeyError(f"{kind}/{name} not declared")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [manifest for manifest in self.manifests if manifest["kind"] == kind]

    def resource(self, name: str) -> RecordedResource:
        for res in self.resources:
            if res.name == name:
                return res
        raise KeyError(f"no resource named {name!r}")


def _plain(value: Any) -> Any:
    """Mock inputs as plain data: secrets unwrapped, integral floats (protobuf numbers) back to ints."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _plain(value.get("value"))
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def fake_cluster_ip(namespace: str, name: str) -> str:
    """What the API server would allocate: a stable address in 10.96.0.0/16 per Service."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return f"10.96.{digest[0]}.{max(digest[1], 2)}"


class _RecordingMocks(pulumi.runtime.Mocks):
    """Answers each registration with its inputs plus what the provider would add (digests, ClusterIPs),
    and remembers the inputs themselves: the manifests are what the program declared, not the answers."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.inputs[(args.typ, args.name)] = dict(args.inputs)
        state = copy.deepcopy(dict(args.inputs))
        if args.typ == "kubernetes:core/v1:Service":
            spec = state.setdefault("spec", {})
            if "clusterIP" not in spec:
                metadata = state.get("metadata", {})
                spec["clusterIP"] = fake_cluster_ip(str(metadata.get("namespace")), str(metadata.get("name")))
        if args.typ == "docker:index/image:Image":
            # What the registry would answer: the pushed image's digest reference.
            state["repoDigest"] = (
                f"{str(args.inputs.get('imageName', 'image')).rsplit(':', 1)[0]}@{FAKE_DIGEST}"
            )
        elif args.typ == DYNAMIC_TYPE and "contextDigest" in args.inputs:
            # The engine-API image (immune_infra.engine_image): the same answer, and its local image id.
            state["repoDigest"] = f"{args.inputs['repository']}@{FAKE_DIGEST}"
            state["imageId"] = FAKE_DIGEST
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class _RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also remembering each registration's dependencies and parent."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[tuple[str, str, str, tuple[str, ...], str, str, bool]] = []

    def RegisterResource(self, request: Any) -> Any:
        # The SDK's MockMonitor is unannotated; its RegisterResource returns the RegisterResourceResponse.
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                (
                    response.urn,
                    request.type,
                    request.name,
                    tuple(request.dependencies),
                    request.parent,
                    request.provider,
                    bool(getattr(request, "retainOnDelete", False)),
                )
            )
        return response


def stack_file(stack: str) -> Path:
    return REPOSITORY_ROOT / f"Pulumi.{stack}.yaml"


def stack_settings(stack: str) -> dict[str, Any]:
    """The raw `settings` object from the real stack file."""
    document = yaml.safe_load(stack_file(stack).read_text())
    settings = document["config"][f"{PROJECT_NAME}:{SETTINGS_KEY}"]
    if not isinstance(settings, dict):
        raise TypeError(f"{stack_file(stack)}: {SETTINGS_KEY} is not an object")
    return settings


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge; a None override deletes the key (so tests can also remove required settings)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def render_only_secrets(stack: str) -> dict[str, str]:
    """Deterministic stand-ins for the stack's secrets, good only for rendering under mocks."""
    return {
        key: "render-" + hashlib.sha256(f"{stack}:{key}".encode()).hexdigest()[:24]
        for key in (*SECRET_KEYS, REGISTRY_PASSWORD_KEY)
    }


def _ensure_event_loop() -> None:
    """Pulumi's runtime takes the thread's current event loop; an earlier `asyncio.run()` in the same
    process (a test runner, a caller's own async code) leaves none, or a closed one."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def render_stack(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    raw_settings: Any = None,
) -> RenderedStack:
    """Run infra/__main__.py for `stack` under mocks. `raw_settings` replaces the settings value as-is."""
    import json

    settings_value = (
        raw_settings if raw_settings is not None else merge(stack_settings(stack), overrides or {})
    )
    secret_values = dict(render_only_secrets(stack) if secrets is None else secrets)
    config = {f"{PROJECT_NAME}:{SETTINGS_KEY}": json.dumps(settings_value)}
    config |= {f"{PROJECT_NAME}:{key}": value for key, value in secret_values.items()}
    secret_config_keys = [f"{PROJECT_NAME}:{key}" for key in secret_values]

    _ensure_event_loop()
    runtime_settings.ROOT.set(None)  # a fresh root Stack for this run's exports
    pulumi.runtime.set_all_config(config, secret_config_keys)
    mocks = _RecordingMocks()
    monitor = _RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT_NAME, stack=stack, preview=False, monitor=monitor)
    root = runtime_settings.get_root_resource()

    def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")

    _sync_await(run_pulumi_func(program))
    exports_output = pulumi.Output.from_input(getattr(root, "outputs", {}))
    exports = _sync_await(exports_output.future())

    rendered = RenderedStack(stack=stack, exports=_plain(exports or {}))
    states = {urn: registration.state for urn, registration in monitor.resources.items()}
    for urn, type_, name, dependencies, parent, provider, retain in monitor.registrations:
        rendered.resources.append(
            RecordedResource(
                type=type_,
                name=name,
                urn=urn,
                inputs=_plain(mocks.inputs.get((type_, name), states.get(urn, {}))),
                dependencies=dependencies,
                parent=parent,
                provider=provider,
                retain_on_delete=retain,
            )
        )
    return rendered


def write_manifests(rendered: RenderedStack, directory: Path) -> list[Path]:
    """One YAML file per object, named kind-name.yaml, for schema validation and checkov."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for manifest in rendered.manifests:
        name = manifest.get("metadata", {}).get("name", "unnamed")
        path = directory / f"{manifest['kind'].lower()}-{name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """`python -m immune_infra.render --out DIR [--stack staging --stack prod]`: write manifests."""
    import argparse

    parser = argparse.ArgumentParser(description="Render the Pulumi program's manifests under mocks.")
    parser.add_argument("--out", type=Path, required=True, help="directory; one sub-directory per stack")
    parser.add_argument("--stack", action="append", dest="stacks", help="staging and/or prod (default: both)")
    args = parser.parse_args(argv)
    for stack in args.stacks or ["staging", "prod"]:
        paths = write_manifests(render_stack(stack), args.out / stack)
        print(f"{stack}: {len(paths)} manifests in {args.out / stack}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
