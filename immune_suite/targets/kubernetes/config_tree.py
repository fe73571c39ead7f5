"""Dotted-key access to a Pulumi stack config tree (`settings.rollout.images.blue` and the like)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _parts(key: str) -> list[str]:
    return key.split(".")


def has_path(tree: Mapping[str, Any], key: str) -> bool:
    node: Any = tree
    for part in _parts(key):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def set_path(tree: dict[str, Any], key: str, value: str) -> None:
    *parents, leaf = _parts(key)
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def remove_path(tree: dict[str, Any], key: str) -> None:
    *parents, leaf = _parts(key)
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)
