"""Helpers for tests that deploy a stack with scripts/cluster-deploy.sh (test_deploy.py, test_traffic.py):
the script's actions, a stack's secrets and routing host. Their fixtures (`images`, `router`) live in
conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.cluster.support import REPO

DEPLOY_SH = REPO / "scripts" / "cluster-deploy.sh"
IMAGES_SH = REPO / "scripts" / "images.sh"
ROUTER_SH = REPO / "cluster" / "router" / "router.sh"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 3600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def deploy(action: str, stack: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("bash", str(DEPLOY_SH), action, stack, env=env)


def must(proc: subprocess.CompletedProcess[str], what: str) -> str:
    assert proc.returncode == 0, (
        f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def deploy_env(stack: str) -> dict[str, str]:
    """`cluster-deploy.sh env <stack>`: KUBECONFIG, NAMESPACE, SECRETS_FILE, PROJECT, BACKEND_URL, ..."""
    return dict(line.split("=", 1) for line in must(deploy("env", stack), "env").splitlines())


def secrets_of(stack: str) -> dict[str, str]:
    env = deploy_env(stack)
    return dict(line.split("=", 1) for line in Path(env["SECRETS_FILE"]).read_text().splitlines())


def ingest_token(stack: str) -> str:
    return next(
        t.split(":")[0] for t in secrets_of(stack)["apiTokens"].split(",") if t.endswith(":ingest+read")
    )


def stable_host(stack: str) -> str:
    """routing.host, from the stack's `stableUrl` output (the router matches on it)."""
    outputs = json.loads(must(deploy("outputs", stack), "outputs"))
    return str(urllib.parse.urlsplit(outputs["stableUrl"]).hostname)


HOSTS = Path("/etc/hosts")


def router_hosts(outputs: dict[str, Any]) -> list[str]:
    """The host names the router matches for a deployed stack: stable, preview and, when the stack
    routes one, the fresh baseline's (`baselineHost`)."""
    hosts = [str(urllib.parse.urlsplit(outputs[key]).hostname) for key in ("stableUrl", "previewUrl")]
    return [*hosts, str(outputs["baselineHost"])] if outputs.get("baselineHost") else hosts


def _hosts_without(mark: str) -> list[str]:
    return [line for line in HOSTS.read_text().splitlines() if not line.endswith(mark)]


@contextmanager
def hosts_on_loopback(names: list[str], owner: str) -> Iterator[None]:
    """`names` resolve to 127.0.0.1 (lines in /etc/hosts tagged with `owner`) while the block runs, so
    requests carry the stack's host names through the router on 127.0.0.1; the lines are removed after,
    and lines a killed earlier run of `owner` left are replaced, never added twice."""
    mark = f"# active-immune-core {owner}"
    HOSTS.write_text(
        "\n".join([*_hosts_without(mark), *(f"127.0.0.1 {name} {mark}" for name in names)]) + "\n"
    )
    try:
        yield
    finally:
        HOSTS.write_text("\n".join(_hosts_without(mark)) + "\n")


def signing_key_pair(directory: Path, stack: str = "cluster") -> dict[str, str]:
    """A fresh Ed25519 key pair for `stack`'s records (stacks/cluster.yaml signs with a configured key):
    the private half in `directory`/<stack>.pem (0600), the public half in `directory`/keys/<stack>.pub.
    Returns the environment a promotion and `verify` take them from (docs/pipeline.md "Records")."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    private = directory / f"{stack}.pem"
    private.touch(mode=0o600)
    pem = serialization.Encoding.PEM
    private.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    (keys / f"{stack}.pub").write_bytes(key.public_key().public_bytes(pem, public))
    return {"IMMUNE_SIGNING_KEY_FILE": str(private), "IMMUNE_KEYS_DIR": str(keys)}
