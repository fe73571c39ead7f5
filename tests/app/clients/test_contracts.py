"""The contract documents themselves and the validation the clients apply with them."""

from __future__ import annotations

import pytest
import yaml
from immune_core.clients.contract import Contract, ContractViolation
from immune_core.settings import Settings
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from immune_suite.paths import REPO_ROOT

CONTRACTS = REPO_ROOT / "app/immune_core/clients/contracts"
SERVICES = ["rte", "ip_intel", "ethical_ai", "memory", "adaptive_immunity", "treg"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_document_is_openapi_3_1_with_valid_schemas_and_explicit_idempotency(service: str) -> None:
    path = CONTRACTS / f"{service}.v1.yaml"
    document = yaml.safe_load(path.read_text())
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"].startswith("1.")  # the file's major version
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name
    contract = Contract.load(service)
    assert "health" in contract.operations
    for item in document["paths"].values():
        for method, operation in item.items():
            assert isinstance(operation.get("x-idempotent"), bool), (service, method)
            assert operation["responses"], (service, method)


def test_a_conforming_answer_passes_and_each_kind_of_violation_is_named() -> None:
    contract = Contract.load("rte")
    good = {"decision": "escalate", "severity": "critical", "confidence": 0.9, "reason": "rule 7"}
    contract.check("triage", 200, good)
    with pytest.raises(ContractViolation, match="undeclared status 201"):
        contract.check("triage", 201, good)
    with pytest.raises(ContractViolation, match=r"\$\['decision'\]"):
        contract.check("triage", 200, {**good, "decision": "nuke"})
    with pytest.raises(ContractViolation, match="'reason' is a required property"):
        contract.check("triage", 200, {k: v for k, v in good.items() if k != "reason"})
    with pytest.raises(ContractViolation, match=r"\$\['confidence'\]"):
        contract.check("triage", 200, {**good, "confidence": 1.5})


def test_references_across_the_document_are_resolved() -> None:
    memory = Contract.load("memory")
    detector = {
        "detector_id": "d1",
        "antigen_type": "source_ip",
        "space": "source_ip",
        "category": "port_scan",
        "features": [0.1, 0.2],
        "radius": 0.3,
    }
    memory.check("recall", 200, {"detectors": [detector]})
    with pytest.raises(ContractViolation, match=r"\$\['detectors'\]\[0\]\['features'\]\[1\]"):
        memory.check("recall", 200, {"detectors": [{**detector, "features": [0.1, 7]}]})


def test_only_operations_marked_idempotent_may_be_retried() -> None:
    assert Contract.load("memory").operation("recall").idempotent
    assert not Contract.load("memory").operation("remember").idempotent
    assert Contract.load("ethical_ai").operation("validate").idempotent


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://127.0.0.1:8002", "http://127.0.0.1:8002"),
        ("https://rte.internal/base/", "https://rte.internal/base"),
        ("", None),
    ],
)
def test_service_urls_are_normalised(url: str, accepted: str | None) -> None:
    assert Settings(rte_url=url).rte_url == accepted


@pytest.mark.parametrize("url", ["ftp://rte", "rte:8002", "http://user:secret@rte:8002"])
def test_service_urls_that_are_not_http_or_carry_credentials_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(treg_url=url)
    assert "secret" not in str(caught.value)  # the refused value is not echoed
