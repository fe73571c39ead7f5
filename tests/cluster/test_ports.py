"""The cluster's router and the embedded local stack can run on one machine at once: no shared port."""

from __future__ import annotations

from immune_suite.stack_config import load_stack
from tests.cluster.support import read_versions


def local_stack_ports(name: str) -> set[int]:
    local = load_stack(name).local
    ingress = local.ingress_port
    ports = {ingress, local.stable_port, local.preview_port}
    ports.add(local.baseline_port if local.baseline_port is not None else ingress + 3)
    ports.add(local.gateway_port if local.gateway_port is not None else ingress + 4)
    # Instance ports: two colours x up to 8 replicas (plus baselines) from instance_base_port.
    ports.update(range(local.instance_base_port, local.instance_base_port + 64))
    return ports


def test_the_router_ports_are_not_the_local_stacks() -> None:
    versions = read_versions()
    keys = ("ROUTER_GATEWAY_PORT", "ROUTER_INGRESS_PORT", "ROUTER_ADMIN_PORT", "ROUTER_METRICS_PORT")
    router = {int(versions[key]) for key in keys}
    for stack in ("local", "ci"):
        assert router.isdisjoint(local_stack_ports(stack)), stack


def test_the_check_sees_a_clash() -> None:
    """Bad case: the router on the local stack's ingress port is a clash the check reports."""
    assert not {18080}.isdisjoint(local_stack_ports("local"))
