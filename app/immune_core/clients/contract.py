"""The OpenAPI 3.1 contract of one external service, and validation of its answers against it.

Each service the core calls has a versioned document in ``contracts/<service>.v<major>.yaml``: the core
states what it sends and what it accepts back. OpenAPI 3.1 schemas are JSON Schema 2020-12 (OpenAPI
Specification 3.1.0, section 4.8.24), so a response body is checked with ``jsonschema``'s
Draft 2020-12 validator, ``$ref`` resolved inside the document through ``referencing``. An operation's
``x-idempotent`` extension says whether the client may retry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_METHODS = ("get", "put", "post", "delete", "patch")


class ContractViolation(ValueError):
    """A response outside the contract: an undeclared status, a body that is not JSON, or a body the
    schema rejects. ``detail`` names where (a JSON path) and why, never the whole body."""

    def __init__(self, service: str, operation: str, detail: str) -> None:
        super().__init__(f"{service}.{operation}: {detail}")
        self.detail = detail


@dataclass(frozen=True)
class Operation:
    """One operation of a contract, as the client calls it and checks its answer."""

    operation_id: str
    method: str  # upper case
    path: str  # template, e.g. /v1/ip/{ip}
    idempotent: bool
    responses: dict[int, str]  # status -> JSON pointer of its application/json schema in the document
    request: str | None  # JSON pointer of the request body's schema, if it has one


class Contract:
    """One service's contract: ``operation(id)`` for the call's shape, ``check`` for its answer."""

    def __init__(self, service: str, document: dict[str, Any]) -> None:
        self.service = service
        self.version = str(document["info"]["version"])
        self.document = document
        uri = f"urn:immune-core:contract:{service}"
        self._uri = uri
        registry: Registry[Any] = Registry().with_resource(
            uri, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self._operations: dict[str, Operation] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for path, item in document["paths"].items():
            for method in _METHODS:
                spec = item.get(method)
                if spec is None:
                    continue
                responses: dict[int, str] = {}
                for status, response in spec.get("responses", {}).items():
                    if "application/json" not in response.get("content", {}):
                        continue
                    pointer = "/".join(
                        (
                            "#",
                            "paths",
                            _escape(path),
                            method,
                            "responses",
                            str(status),
                            "content",
                            "application~1json",
                            "schema",
                        )
                    )
                    responses[int(status)] = pointer
                    self._validators[pointer] = Draft202012Validator(
                        {"$ref": uri + pointer}, registry=registry
                    )
                request: str | None = None
                if "application/json" in spec.get("requestBody", {}).get("content", {}):
                    request = "/".join(
                        (
                            "#",
                            "paths",
                            _escape(path),
                            method,
                            "requestBody",
                            "content",
                            "application~1json",
                            "schema",
                        )
                    )
                    self._validators[request] = Draft202012Validator(
                        {"$ref": uri + request}, registry=registry
                    )
                op = Operation(
                    spec["operationId"],
                    method.upper(),
                    path,
                    bool(spec.get("x-idempotent")),
                    responses,
                    request,
                )
                self._operations[op.operation_id] = op

    @classmethod
    @cache
    def load(cls, service: str, major: int = 1) -> Contract:
        """The packaged document ``contracts/<service>.v<major>.yaml``; raises FileNotFoundError."""
        text = (
            resources.files(__package__).joinpath("contracts", f"{service}.v{major}.yaml").read_text("utf-8")
        )
        return cls(service, yaml.safe_load(text))

    def operation(self, operation_id: str) -> Operation:
        """The operation ``operation_id``; raises KeyError for one the contract does not declare."""
        return self._operations[operation_id]

    @property
    def operations(self) -> dict[str, Operation]:
        """Every operation by its id (a copy)."""
        return dict(self._operations)

    def check(self, operation_id: str, status: int, body: Any) -> None:
        """Raise ``ContractViolation`` unless ``body`` (decoded JSON) is what ``status`` declares."""
        op = self._operations[operation_id]
        pointer = op.responses.get(status)
        if pointer is None:
            raise ContractViolation(self.service, operation_id, f"undeclared status {status}")
        error = _first_error(self._validators[pointer], body)
        if error is not None:
            where = "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
            raise ContractViolation(self.service, operation_id, f"{where}: {error.message[:200]}")

    def request_problem(self, operation_id: str, body: Any) -> str | None:
        """What is wrong with a request ``body`` for ``operation_id`` (None if it conforms): the servers
        that stand in for a service in tests refuse, as a real one would, what the contract forbids."""
        pointer = self._operations[operation_id].request
        if pointer is None:
            return None
        error = _first_error(self._validators[pointer], body)
        return None if error is None else f"{list(error.absolute_path)}: {error.message[:200]}"


def _escape(path: str) -> str:
    # JSON pointer escaping (RFC 6901, section 3): "~" -> "~0", "/" -> "~1".
    return path.replace("~", "~0").replace("/", "~1")


def _first_error(validator: Draft202012Validator, body: Any) -> ValidationError | None:
    return next(iter(validator.iter_errors(body)), None)
