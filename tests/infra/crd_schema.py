"""Validating custom objects against the `openAPIV3Schema` of their vendored, published CRDs.

The API server validates a custom object against its CRD's structural schema (OpenAPI v3, with the
Kubernetes extensions); jsonschema checks the same keywords (types, required, enums, patterns, bounds,
one-of/any-of). Not checked here: CEL rules (`x-kubernetes-validations`) and defaulting, which only the API
server evaluates. Go's RE2 allows an inline flag group such as `(?i)` after `^`; Python's `re` wants it first,
so patterns are rewritten that way (same language) before use.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

import jsonschema
from immune_infra.crds import openapi_schema

_LATE_FLAGS = re.compile(r"^\^\(\?([a-z]+)\)")


def _python_pattern(pattern: str) -> str:
    return _LATE_FLAGS.sub(lambda match: f"(?{match.group(1)})^", pattern)


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        rewritten = {key: _rewrite(value) for key, value in node.items()}
        if isinstance(node.get("pattern"), str):
            rewritten["pattern"] = _python_pattern(node["pattern"])
        return rewritten
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    return node


@cache
def validator(kind: str, version: str) -> jsonschema.protocols.Validator:
    schema = _rewrite(copy.deepcopy(openapi_schema(kind, version)))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every schema violation of `manifest` (a whole object: apiVersion, kind, metadata, spec)."""
    version = manifest["apiVersion"].rsplit("/", 1)[-1]
    found = validator(manifest["kind"], version).iter_errors(manifest)
    return sorted(
        f"{'.'.join(str(part) for part in error.absolute_path)}: {error.message}" for error in found
    )
