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
import yaml
from immune_infra.crds import openapi_schema
from immune_infra.render import REPOSITORY_ROOT

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


# Traefik's CRDs are the router's, vendored beside it for its pinned version (cluster/router/crds/); the
# program declares Middleware objects of theirs for the platform gateway.
ROUTER_CRDS = REPOSITORY_ROOT / "cluster" / "router" / "crds"
ROUTER_KINDS = ("Middleware",)


def _router_schema(kind: str, version: str) -> dict[str, Any]:
    pin = next(
        line.split("=", 1)[1]
        for line in (REPOSITORY_ROOT / "cluster" / "versions.env").read_text().splitlines()
        if line.startswith("TRAEFIK_VERSION=")
    )
    for document in yaml.safe_load_all((ROUTER_CRDS / f"traefik-{pin}.yaml").read_text()):
        if document and document["spec"]["names"]["kind"] == kind:
            for served in document["spec"]["versions"]:
                if served["name"] == version:
                    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
                    return schema
    raise KeyError(f"the router's vendored CRDs have no {kind} {version}")


@cache
def validator(kind: str, version: str) -> jsonschema.protocols.Validator:
    source = _router_schema(kind, version) if kind in ROUTER_KINDS else openapi_schema(kind, version)
    schema = _rewrite(copy.deepcopy(source))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every schema violation of `manifest` (a whole object: apiVersion, kind, metadata, spec)."""
    version = manifest["apiVersion"].rsplit("/", 1)[-1]
    found = validator(manifest["kind"], version).iter_errors(manifest)
    return sorted(
        f"{'.'.join(str(part) for part in error.absolute_path)}: {error.message}" for error in found
    )
