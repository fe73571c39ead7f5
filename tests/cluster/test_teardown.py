"""`scripts/cluster.sh down` gives the host back as it was before `up` (runs last: file order)."""

from __future__ import annotations

import pytest

from tests.cluster.support import Kube, deploy_ready, host_snapshot, run_cluster_sh

pytestmark = pytest.mark.cluster


def test_down_restores_links_rules_and_mounts(
    cluster: Kube, host_before_up: dict[str, list[str]], probe_image: str, namespace: str
) -> None:
    deploy_ready(cluster, namespace, probe_image, 2)  # pods: veths, overlay and netns mounts to undo
    during = host_snapshot()
    # The cluster really changed the host (so the comparison below can fail).
    assert during["links"] != host_before_up["links"]
    assert during["iptables-filter"] != host_before_up["iptables-filter"]
    assert during["mounts"] != host_before_up["mounts"]
    run_cluster_sh("down")
    after = host_snapshot()
    for key, before in host_before_up.items():
        assert after[key] == before, key
    assert run_cluster_sh("status", check=False).returncode != 0
