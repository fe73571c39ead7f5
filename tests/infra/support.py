"""Renders of the real program under Pulumi's mocks, cached by (stack, overrides) because the same
variants are read by several tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

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
