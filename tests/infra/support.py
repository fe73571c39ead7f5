"""Renders of the real program under Pulumi's mocks, cached by (stack, overrides) because the same
variants are read by several tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from immune_infra.policies import pod_spec
from immune_infra.render import RenderedStack, render_stack

Render = Callable[..., RenderedStack]
_cache: dict[str, RenderedStack] = {}


def render(stack: str, overrides: dict[str, Any] | None = None) -> RenderedStack:
    key = json.dumps([stack, overrides], sort_keys=True)
    if key not in _cache:
        _cache[key] = render_stack(stack, overrides)
    return _cache[key]


def rollout(active: str = "blue", weight: int = 0, **routing: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {"rollout": {"activeColor": active, "canaryWeight": weight}}
    if routing:
        overrides["routing"] = routing
    return overrides


Key = tuple[str, str]


def by_key(rendered: RenderedStack) -> dict[Key, dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in rendered.manifests}


def leaf_diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Paths of every leaf that differs between two objects."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            change
            for key in sorted(set(before) | set(after))
            for change in leaf_diff(before.get(key), after.get(key), f"{path}.{key}")
        ]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            change
            for i, pair in enumerate(zip(before, after, strict=True))
            for change in leaf_diff(*pair, f"{path}[{i}]")
        ]
    return [] if before == after else [path]


def stack_diff(before: RenderedStack, after: RenderedStack) -> dict[Key, list[str]]:
    old, new = by_key(before), by_key(after)
    changes: dict[Key, list[str]] = {}
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes[key] = ["<added>"]
        elif key not in new:
            changes[key] = ["<removed>"]
        elif diff := leaf_diff(old[key], new[key]):
            changes[key] = diff
    return changes


_SUFFIX = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int) -> float:
    text = str(value)
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


def assert_fits_the_quota(stack: RenderedStack) -> None:
    """Both colours at HPA max plus a surge pod each, every StatefulSet, exporters and all Jobs."""
    max_replicas = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["maxReplicas"] + 1
        for hpa in stack.of_kind("HorizontalPodAutoscaler")
    }
    totals = {
        "pods": 0.0,
        "requests.cpu": 0.0,
        "requests.memory": 0.0,
        "limits.cpu": 0.0,
        "limits.memory": 0.0,
    }
    for manifest in stack.manifests:
        spec = pod_spec(manifest)
        if spec is None:
            continue
        name = manifest["metadata"]["name"]
        replicas = max_replicas.get(name, manifest["spec"].get("replicas", 1))
        totals["pods"] += replicas
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                # Init containers run before the others, so a pod needs the larger of the two.
                main = sum(quantity(c["resources"][section][resource]) for c in spec["containers"])
                init = max(
                    (quantity(c["resources"][section][resource]) for c in spec.get("initContainers", [])),
                    default=0,
                )
                totals[f"{section}.{resource}"] += replicas * max(main, init)
    hard = stack.find("ResourceQuota", "immune-quota")["spec"]["hard"]
    for key, used in totals.items():
        assert used <= quantity(hard[key]), (
            f"{stack.stack}: worst case {key} {used:g} exceeds quota {hard[key]}"
        )
