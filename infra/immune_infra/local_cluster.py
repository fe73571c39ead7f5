"""Settings overrides that fit a stack to this machine's local Kubernetes cluster (scripts/cluster.sh).

What the local cluster is (issue 13, cluster/versions.env): one node with 2 cores, no CoreDNS, no volume
provisioner, no access to public registries; the images are the ones `scripts/images.sh` built from Debian
packages and pushed to its registry (their references in `<state>/images/built/<name>`, first line); the
app image is built by the program itself (engine-API builder) from `scripts/images.sh context` on the
images daemon. The overrides (camelCase, the stack files' shape) are merged over `Pulumi.<stack>.yaml`:

    python -m immune_infra.local_cluster --stack staging --context DIR                 # JSON of the overrides
    python -m immune_infra.local_cluster --stack staging --context DIR --write FILE    # merged into FILE

`--write` merges them into the settings object of a stack file (a project copy's Pulumi.<stack>.yaml; its
secrets and other keys stay; comments do not). Not `pulumi config set --path` leaf by leaf: that stores
"1" as a number, which the settings model refuses where a quantity is text. Grafana is left out (no
Grafana image is built here: docs/infra.md); its objects stay covered by the default stacks' tests.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from immune_infra.paths import REPOSITORY_ROOT

VERSIONS = REPOSITORY_ROOT / "cluster" / "versions.env"

# settings path -> the image name scripts/images.sh builds.
IMAGES: dict[tuple[str, str], str] = {
    ("kafka", "image"): "kafka",
    ("kafka", "exporterImage"): "kafka-exporter",
    ("redis", "image"): "redis",
    ("redis", "exporterImage"): "redis-exporter",
    ("postgres", "image"): "postgres",
    ("postgres", "exporterImage"): "postgres-exporter",
    ("monitoring", "prometheusImage"): "prometheus",
}
BASE_IMAGE = "python"  # app/Dockerfile's BASE


def _resources(cpu: str, cpu_limit: str, memory: str, memory_limit: str) -> dict[str, str]:
    return {"cpuRequest": cpu, "cpuLimit": cpu_limit, "memoryRequest": memory, "memoryLimit": memory_limit}


# Requests small enough for staging and prod together on 2 cores (limits keep bursts possible).
FOOTPRINT: dict[str, Any] = {
    "app": {
        "resources": _resources("50m", "500m", "160Mi", "512Mi"),
        "migrateResources": _resources("20m", "250m", "96Mi", "256Mi"),
    },
    "kafka": {"heap": "-Xms256m -Xmx256m", "resources": _resources("100m", "1", "512Mi", "768Mi")},
    "redis": {"resources": _resources("20m", "250m", "32Mi", "128Mi")},
    "postgres": {"resources": _resources("50m", "500m", "128Mi", "512Mi")},
    "monitoring": {"prometheusResources": _resources("50m", "500m", "192Mi", "512Mi")},
}


# The platform gateway's per-address limit on /api/immune/* on this cluster: small, so the end-to-end
# test's burst past it stays short (tests/cluster/test_deploy.py). Nothing else here uses that path.
LOCAL_GATEWAY_RATE_LIMIT_PER_10S = 60


LOCAL_SCRAPE_INTERVAL = "5s"


def router_scrape_target(versions: Mapping[str, str]) -> str:
    """`CNI_BRIDGE_IP:ROUTER_METRICS_PORT` from cluster/versions.env: the router's metrics entry point."""
    return f"{versions['CNI_BRIDGE_IP']}:{versions['ROUTER_METRICS_PORT']}"


class LocalClusterError(RuntimeError):
    """A prerequisite of the local cluster is missing; the message says which and how to make it."""


def read_versions(path: Path = VERSIONS) -> dict[str, str]:
    """cluster/versions.env as a dict (KEY=value lines, `#` comments)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pins[key] = value
    return pins


def default_built_dir() -> Path:
    """Where scripts/images.sh records what it built (IMMUNE_STATE_DIR, default ~/.local/state/...)."""
    state = os.environ.get("IMMUNE_STATE_DIR") or str(Path.home() / ".local" / "state" / "active-immune-core")
    return Path(state) / "images" / "built"


def built_images(built_dir: Path) -> dict[str, str]:
    """name -> pushed reference, for every image scripts/images.sh built (first line of each file)."""
    if not built_dir.is_dir():
        raise LocalClusterError(f"no images built yet ({built_dir} missing): run scripts/images.sh build")
    refs = {}
    for path in sorted(built_dir.iterdir()):
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        if lines and lines[0].strip():
            refs[path.name] = lines[0].strip()
    return refs


def overrides(
    stack: str,
    built: Mapping[str, str],
    versions: Mapping[str, str],
    app_context: Path,
    gateway_name: str = "immune-gateway",
    gateway_namespace: str | None = None,
) -> dict[str, Any]:
    """The settings overrides for `stack` on the local cluster. Raises LocalClusterError naming every
    image that has not been built."""
    needed = [*IMAGES.values(), BASE_IMAGE]
    missing = sorted(name for name in needed if name not in built)
    if missing:
        raise LocalClusterError(
            f"images not built: {', '.join(missing)} (scripts/images.sh build {' '.join(missing)})"
        )
    registry = f"127.0.0.1:{versions['IMAGES_REGISTRY_PORT']}"
    result: dict[str, Any] = json.loads(json.dumps(FOOTPRINT))
    for (section, key), name in IMAGES.items():
        result.setdefault(section, {})[key] = built[name]
    result["monitoring"]["grafana"] = False
    # The promotions here judge each 40 s canary step on Prometheus too, after a scrape newer than
    # the step's end (immune_suite/metrics/checks.py wait_fresh): 15 s scrapes would add up to 15 s
    # per step and leave only two or three points in a step's window.
    result["monitoring"]["scrapeInterval"] = LOCAL_SCRAPE_INTERVAL
    # The router is a host process (cluster/router/router.sh): its /metrics are served on the bridge's
    # gateway address, which the pods reach (127.0.0.1 would be the pod itself).
    result["monitoring"]["routerScrapeTarget"] = router_scrape_target(versions)
    # No CoreDNS: Prometheus finds each app pod through the API (immune_infra.endpoints_sd), run on the
    # Python base; the API server answers the pods on the node address (scripts/cluster.sh).
    result["monitoring"]["endpointsDiscovery"] = {
        "image": built[BASE_IMAGE],
        "apiServer": f"{versions['CNI_BRIDGE_IP']}:{versions['APISERVER_PORT']}",
    }
    result["cluster"] = {"dns": False, "persistentVolumes": False, "singleNode": True}
    result["routing"] = {
        "mode": "gateway",
        "gatewayName": gateway_name,
        "gatewayRateLimitPer10s": LOCAL_GATEWAY_RATE_LIMIT_PER_10S,
    }
    if gateway_namespace:
        result["routing"]["gatewayNamespace"] = gateway_namespace
        result["routing"]["ingressNamespace"] = gateway_namespace
    result["imageBuild"] = {
        "enabled": True,
        "builder": "engine-api",
        # Its own repository: scripts/images.sh pushes immune/immune-core:<tag> itself, and a `destroy`
        # (which removes the local tag) must not take that one away.
        "repository": f"{registry}/pulumi/immune-core",
        "tag": versions.get("IMAGES_APP_TAG", "0.1.0"),
        "context": str(app_context),
        "dockerfile": str(app_context / "app" / "Dockerfile"),
        "buildArgs": {"BASE": built[BASE_IMAGE], "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/src"},
        "dockerHost": f"unix://{versions['IMAGES_DOCKER_SOCKET']}",
        # The images daemon runs without a bridge: RUN steps get no network (and need none).
        "network": "none",
    }
    result["rollout"] = {"images": {"blue": "build", "green": "build"}}
    if stack not in ("staging", "prod"):
        raise LocalClusterError(f"unknown stack {stack!r} (staging or prod)")
    return result


def write_stack_file(path: Path, local: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `local` into the settings object of the stack file at `path` (rewritten); returns the
    merged settings, validated by the program's settings model (ConfigError if they do not parse)."""
    import yaml

    from immune_infra.config import PROJECT_NAME, SETTINGS_KEY, parse_settings
    from immune_infra.render import merge

    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    key = f"{PROJECT_NAME}:{SETTINGS_KEY}"
    merged = merge(document["config"][key], local)
    parse_settings(merged)
    document["config"][key] = merged
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Settings overrides for the local Kubernetes cluster.")
    parser.add_argument("--stack", choices=("staging", "prod"), required=True)
    parser.add_argument("--built", type=Path, default=None, help="scripts/images.sh's built/ directory")
    parser.add_argument("--context", type=Path, required=True, help="output of `scripts/images.sh context`")
    parser.add_argument("--gateway-name", default="immune-gateway")
    parser.add_argument("--gateway-namespace", default=None)
    parser.add_argument("--write", type=Path, default=None, help="a stack file to merge the overrides into")
    args = parser.parse_args(argv)
    try:
        result = overrides(
            args.stack,
            built_images(args.built or default_built_dir()),
            read_versions(),
            args.context,
            args.gateway_name,
            args.gateway_namespace,
        )
    except LocalClusterError as exc:
        parser.exit(1, f"local_cluster: {exc}\n")
    if args.write is not None:
        write_stack_file(args.write, result)
        print(f"local_cluster: {args.write} now carries the local cluster's settings for {args.stack}")
    else:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
