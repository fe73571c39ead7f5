"""Reading what the Kubernetes provider rendered, and telling exactly what changed between two renders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Documents = dict[str, dict[str, Any]]  # "Kind/namespace/name" -> the object


def load_rendered(directory: Path) -> Documents:
    """Every object under the render directory (renderYamlToDirectory writes 0-crd/ and 1-manifest/)."""
    documents: Documents = {}
    for path in sorted(directory.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not document:
                continue
            metadata = document.get("metadata", {})
            key = f"{document['kind']}/{metadata.get('namespace', '')}/{metadata['name']}"
            if key in documents:
                raise ValueError(f"{key} rendered twice")
            documents[key] = document
    return documents


@dataclass(frozen=True)
class Change:
    obj: str  # "Kind/namespace/name"
    path: str  # dotted path inside the object ("" for a whole object added or removed)
    before: Any
    after: Any


def _walk(obj: str, path: str, before: Any, after: Any) -> Iterator[Change]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after)):
            sub = f"{path}.{key}" if path else str(key)
            yield from _walk(obj, sub, before.get(key), after.get(key))
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            yield from _walk(obj, f"{path}[{index}]", b, a)
    elif before != after:
        yield Change(obj, path, before, after)


def diff(before: Documents, after: Documents) -> list[Change]:
    changes: list[Change] = []
    for key in sorted(set(before) | set(after)):
        if key not in before:
            changes.append(Change(key, "", None, "added"))
        elif key not in after:
            changes.append(Change(key, "", "removed", None))
        else:
            changes.extend(_walk(key, "", before[key], after[key]))
    return changes


def summary(changes: list[Change]) -> set[tuple[str, str]]:
    return {(change.obj, change.path) for change in changes}
