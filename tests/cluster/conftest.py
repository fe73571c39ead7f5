"""Session fixtures for the local Kubernetes cluster (scripts/cluster.sh, issue 13).

`cluster` snapshots the host, runs `scripts/cluster.sh up` once per session and `down` at the end;
`probe_image` builds the static Go test server of tests/cluster/probe, packs it with
cluster/oci_archive.py and imports it into containerd (no registry involved). Every test here carries
the `cluster` marker; they need root (bridges, iptables, cgroups), Go and the cached cluster build.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.deploy_support import IMAGES_SH, ROUTER_SH, must, run
from tests.cluster.shared import kept_stacks, shared_snapshot
from tests.cluster.support import REPO, Kube, cluster_env, host_snapshot, read_versions, run_cluster_sh

PROBE_IMAGE = "aic.local/probe:test"

# The test whose `down` ends the cluster for good: it runs after every other test of the session,
# whatever the file names (tests/cluster/test_traffic.py sorts after it).
LAST_MODULE = "tests/cluster/test_teardown.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The teardown module last; tests marked `only_stack(<name>)` kept only for that stack of the
    `deployed` fixture's parameters, and only the stacks IMMUNE_CLUSTER_STACKS names when it is set
    (tests/cluster/shared.py); the others are deselected, so no skip stands in for a run."""
    kept, dropped = [], []
    streams = kept_stacks()
    for item in items:
        only = item.get_closest_marker("only_stack")
        callspec = getattr(item, "callspec", None)
        stack = callspec.params.get("deployed") if callspec is not None else None
        if stack is not None and (
            (only is not None and stack not in only.args) or (streams is not None and stack not in streams)
        ):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    kept.sort(key=lambda item: item.nodeid.startswith(LAST_MODULE))  # stable: file order otherwise
    items[:] = kept


@pytest.fixture(scope="session")
def host_before_up() -> dict[str, list[str]]:
    """The host as it was before this session's `up` (taken before the `cluster` fixture starts it), or
    before the shared cluster's `up` (IMMUNE_SHARED_CLUSTER, tests/cluster/shared.py)."""
    shared = shared_snapshot()
    if shared is not None:
        return shared
    if run_cluster_sh("status", check=False).returncode == 0:
        # A cluster left running by someone else would make this snapshot meaningless.
        pytest.fail("a cluster is already running: run `bash scripts/cluster.sh down` first")
    return host_snapshot()


@pytest.fixture(scope="session")
def cluster(host_before_up: dict[str, list[str]]) -> Iterator[Kube]:
    """Brings the cluster up for the session (build cached) and takes it down at the end; a shared
    cluster (IMMUNE_SHARED_CLUSTER) must be running already and is left running."""
    if shared_snapshot() is not None:
        if run_cluster_sh("status", check=False).returncode != 0:
            pytest.fail("IMMUNE_SHARED_CLUSTER is set but no cluster runs: python -m tests.cluster.shared up")
        yield Kube(cluster_env())
        return
    try:
        run_cluster_sh("up")
        kube = Kube(cluster_env())
    except BaseException:
        run_cluster_sh("down", check=False)  # a failed `up` must not leave the host changed
        raise
    try:
        yield kube
    finally:
        run_cluster_sh("down", check=False)


@pytest.fixture(scope="session")
def probe_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Builds tests/cluster/probe (static, CGO off) and packs it; returns the OCI archive's path."""
    out = tmp_path_factory.mktemp("probe")
    env = {**os.environ, "CGO_ENABLED": "0"}
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "probe"), "."],
        cwd=REPO / "tests" / "cluster" / "probe",
        env=env,
        check=True,
    )
    archive = out / "probe.tar"
    packer = REPO / "cluster" / "oci_archive.py"
    pack = ["python3", str(packer), "--name", PROBE_IMAGE, "--entrypoint", "/probe", "--out", str(archive)]
    subprocess.run([*pack, f"{out / 'probe'}=/probe"], check=True)
    return archive


@pytest.fixture
def probe_image(cluster: Kube, probe_archive: Path) -> str:
    """The probe image, imported into containerd if it is not there (a `down`/`up` starts empty)."""
    listed = cluster.ctr("images", "ls", "-q").stdout.split()
    if PROBE_IMAGE not in listed:
        cluster.ctr("images", "import", str(probe_archive))
    return PROBE_IMAGE


@pytest.fixture
def namespace(cluster: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true")
    cluster.new_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def images(cluster: Kube) -> None:
    """The images built and pushed (cached: a warm build only re-pushes); images.json by digest."""
    must(run("bash", str(IMAGES_SH), "up"), "images.sh up")
    must(run("bash", str(IMAGES_SH), "build"), "images.sh build")
    must(run("bash", str(IMAGES_SH), "push"), "images.sh push")


@pytest.fixture(scope="module")
def router(cluster: Kube) -> str:
    """The router's gateway address (scripts/cluster.sh up starts it when cluster/router/ exists)."""
    if not ROUTER_SH.exists():
        pytest.fail(f"{ROUTER_SH} missing: the router has not landed")
    must(run("bash", str(ROUTER_SH), "up"), "router.sh up")
    return f"http://127.0.0.1:{read_versions()['ROUTER_GATEWAY_PORT']}"
