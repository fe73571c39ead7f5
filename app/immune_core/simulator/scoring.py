"""Score a detection run against the simulator's ground truth.

An attack counts as detected when some threat has the attack's expected category and names its
antigen. A false positive is a *benign antigen* -- any antigen (source address, host, host/process)
that appears in the traffic and is not the antigen of an attack -- named by at least one threat. The
false-positive rate is flagged benign antigens / benign antigens observed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from immune_core.detection.threat import Threat
from immune_core.simulator.attacks import EXPECTED_DETECTIONS
from immune_core.simulator.records import LabelledEvent


def antigens_of(event: dict[str, object]) -> set[str]:
    """Every antigen an event exposes, in the ``<type>:<value>`` form the threats use."""
    if event["kind"] == "network_flow":
        return {f"source_ip:{event['src_ip']}", f"host:{event['host_id']}"}
    if event["kind"] == "endpoint":
        found = {f"host:{event['host_id']}", f"process:{event['host_id']}/{event['process']}"}
        if event.get("remote_ip"):
            found.add(f"source_ip:{event['remote_ip']}")
        return found
    return set()


@dataclass(slots=True)
class Score:
    detected: dict[str, bool] = field(default_factory=dict)
    attack_antigens: set[str] = field(default_factory=set)
    benign_antigens: set[str] = field(default_factory=set)
    false_positives: set[str] = field(default_factory=set)

    @property
    def false_positive_rate(self) -> float:
        return len(self.false_positives) / len(self.benign_antigens) if self.benign_antigens else 0.0

    @property
    def all_detected(self) -> bool:
        return all(self.detected.values())


def score(events: Iterable[LabelledEvent], threats: Iterable[Threat]) -> Score:
    result = Score()
    attacks: dict[str, str] = {}
    observed: set[str] = set()
    for labelled in events:
        observed |= antigens_of(labelled.event)
        if labelled.label is not None and labelled.antigen is not None:
            attacks[labelled.label] = labelled.antigen
    result.attack_antigens = set(attacks.values())
    result.benign_antigens = observed - result.attack_antigens
    raised = {(threat.category, f"{threat.antigen_type}:{threat.antigen}") for threat in threats}
    for attack, antigen in attacks.items():
        expected = EXPECTED_DETECTIONS[attack]
        result.detected[attack] = any((category, antigen) in raised for category in expected.categories)
    result.false_positives = {antigen for _, antigen in raised if antigen not in result.attack_antigens}
    return result
