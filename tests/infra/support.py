"""Renders of the real program under Pulumi's mocks, cached by (stack, overrides) because the same
variants are read by several tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from immune_infra.footprint import QUOTA_KEYS, quantity, workloads_footprint
from immune_infra.render import RenderedStack, render_stack

Render = Callable[..., RenderedStack]
# A cluster without DNS (cluster.dns false) and what bundled monitoring then needs: the endpoint
# discovery sidecar's image and the API server's address as the pods reach it.
DISCOVERY = {"image": "python:3.11.2@sha256:" + "cd" * 32, "apiServer": "10.244.0.1:16443"}
NO_DNS: dict[str, Any] = {"cluster": {"dns": False}, "monitoring": {"endpointsDiscovery": DISCOVERY}}
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


def assert_fits_the_quota(stack: RenderedStack) -> None:
    """Both colours at HPA max plus a surge pod each, every StatefulSet, exporters and all Jobs
    (immune_infra.footprint.workloads_footprint) within the rendered ResourceQuota."""
    used = workloads_footprint(stack.manifests)
    hard = stack.find("ResourceQuota", "immune-quota")["spec"]["hard"]
    for key in QUOTA_KEYS:
        assert used[key] <= quantity(hard[key]), (
            f"{stack.stack}: worst case {key} {used[key]:g} exceeds quota {hard[key]}"
        )
