"""Endpoint discovery for the bundled Prometheus on a cluster without DNS: the pods behind Services,
read from the Kubernetes API, written as a Prometheus file_sd file.

Why: the bundled Prometheus finds the service's pods by DNS (one headless Service per colour). A cluster
without CoreDNS (`cluster.dns: false`, the local cluster) cannot answer that, and a Service's ClusterIP
is no substitute: with several replicas each scrape reaches one of them (kube-proxy keeps a scrape
connection on one pod), so a counter summed over a colour counts one pod. Debian's Prometheus is built
without `kubernetes_sd_configs`, so this sidecar does what that discovery would: it lists the
EndpointSlices of the named Services and writes one target per endpoint to a file Prometheus reads
through `file_sd_configs`, the interface Prometheus documents for custom discovery
(https://prometheus.io/docs/prometheus/latest/configuration/configuration/#file_sd_config).

Each target group carries the `__meta_kubernetes_*` labels `kubernetes_sd_configs` (role `endpointslice`)
would give, so the relabelling is what a kubernetes_sd user writes: `__meta_kubernetes_service_name`,
`__meta_kubernetes_namespace`, `__meta_kubernetes_pod_name`, `__meta_kubernetes_endpointslice_endpoint_
conditions_ready`. Terminating endpoints are left out; not-yet-ready ones are kept (as kubernetes_sd does).

The API: `GET /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices?labelSelector=kubernetes.io/
service-name in (...)` (https://kubernetes.io/docs/reference/kubernetes-api/service-resources/
endpoint-slice-v1/), paged with `limit`/`continue`, authenticated with the pod's projected
ServiceAccount token (re-read on every poll: the kubelet rotates it), TLS checked against the cluster's CA.

A failed poll (API down, 4xx/5xx, a malformed answer) keeps the last file: Prometheus keeps scraping the
targets it had, and the failure is logged as one JSON line on stderr. `--once` polls once and exits 1 on
a failure (tests, debugging). Each poll's outcome is kept beside the file for `--probe alive|ready`, the
container's liveness and readiness probes.

Runs on the Python base image with the standard library only (the sidecar's image has no packages):

    python3 endpoints_sd.py --namespace immune-staging --service immune-core-blue-pods \\
        --service immune-core-green-pods --port http --output /etc/prometheus-discovery/app.json
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PAGE_SIZE = 500
TIMEOUT_S = 10.0

TargetGroup = dict[str, Any]


class DiscoveryError(RuntimeError):
    """The API's answer could not be read: the message says what and where."""


def default_api_url() -> str:
    """The API server as every pod sees it (the kubelet sets these variables in every container)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return ""
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def slices_path(namespace: str, services: Sequence[str], page_size: int, token: str | None) -> str:
    """The list request's path and query for `services`' EndpointSlices in `namespace`."""
    query = {
        "labelSelector": f"{SERVICE_NAME_LABEL} in ({','.join(sorted(services))})",
        "limit": str(page_size),
    }
    if token:
        query["continue"] = token
    return f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?{urllib.parse.urlencode(query)}"


def target_groups(slices: Sequence[dict[str, Any]], namespace: str, port_name: str) -> list[TargetGroup]:
    """One target group per endpoint address of `slices` (EndpointSlice objects) on the port named
    `port_name`, sorted by target. Raises DiscoveryError on an object that is not an EndpointSlice."""
    groups: list[TargetGroup] = []
    for item in slices:
        if not isinstance(item, dict):
            raise DiscoveryError(f"an item of the list is not an object: {item!r:.80}")
        meta = item.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not isinstance(service, str):
            raise DiscoveryError(f"EndpointSlice {meta.get('name')!r} has no {SERVICE_NAME_LABEL} label")
        named = [p for p in item.get("ports") or [] if isinstance(p, dict) and p.get("name") == port_name]
        ports = [p.get("port") for p in named]
        if not ports:
            continue  # a Service without that port (or no endpoints yet: ports is null)
        for endpoint in item.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("terminating") is True:
                continue
            pod = (endpoint.get("targetRef") or {}).get("name", "")
            ready = conditions.get("ready") is not False  # unset means ready (the API's own rule)
            for address in endpoint.get("addresses") or []:
                groups.append(
                    {
                        "targets": [f"{address}:{ports[0]}"],
                        "labels": {
                            "__meta_kubernetes_namespace": namespace,
                            "__meta_kubernetes_service_name": service,
                            "__meta_kubernetes_pod_name": pod,
                            "__meta_kubernetes_endpointslice_endpoint_conditions_ready": str(ready).lower(),
                        },
                    }
                )
    return sorted(groups, key=lambda group: group["targets"][0])


Fetch = Callable[[str], Any]


def http_fetch(api_url: str, token_file: Path | None, ca_file: Path | None) -> Fetch:
    """GET `api_url + path` as JSON, with the bearer token read from `token_file` at each call."""
    secure = ca_file is not None and api_url.startswith("https:")

    def fetch(path: str) -> Any:
        # The token and the CA are read at each call: the kubelet rotates the one and may publish the
        # other late; a missing file fails this poll, never the loop.
        headers = {"Accept": "application/json"}
        try:
            context = ssl.create_default_context(cafile=str(ca_file)) if secure else None
            if token_file is not None:
                headers["Authorization"] = f"Bearer {token_file.read_text(encoding='utf-8').strip()}"
        except (OSError, ssl.SSLError) as exc:
            raise DiscoveryError(f"credentials: {exc}") from exc
        # The scheme is http(s) only: parse_args refuses any other (ruff S310, bandit B310).
        request = urllib.request.Request(api_url + path, headers=headers)  # noqa: S310
        try:
            opened = urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context)  # noqa: S310  # nosec B310
            with opened as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise DiscoveryError(f"GET {path}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DiscoveryError(f"GET {path}: {exc}") from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DiscoveryError(f"GET {path}: not JSON: {body[:80]!r}") from exc

    return fetch


def discover(fetch: Fetch, namespace: str, services: Sequence[str], port_name: str) -> list[TargetGroup]:
    """Every page of the Services' EndpointSlices, as target groups. Raises DiscoveryError."""
    slices: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = fetch(slices_path(namespace, services, PAGE_SIZE, token))
        if not isinstance(page, dict) or page.get("kind") != "EndpointSliceList":
            raise DiscoveryError(f"not an EndpointSliceList: {str(page)[:120]}")
        items = page.get("items")
        if not isinstance(items, list):
            raise DiscoveryError("EndpointSliceList without items")
        slices += items
        token = (page.get("metadata") or {}).get("continue") or None
        if token is None:
            return target_groups(slices, namespace, port_name)


def write_atomically(path: Path, groups: list[TargetGroup]) -> bool:
    """Write `groups` as file_sd JSON to `path` by rename (Prometheus never reads half a file); False if
    the file already held exactly that."""
    text = json.dumps(groups, indent=1, sort_keys=True) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return True


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"ts": time.time(), "event": event, **fields}), file=sys.stderr, flush=True)


def status_path(output: Path) -> Path:
    """Where each poll records its outcome, for the probes (beside the targets, hidden from file_sd)."""
    return output.with_name(f".{output.stem}.status.json")


def record_status(output: Path, ok: bool, error: str = "") -> None:
    partial = output.with_name(f".{output.stem}.status.tmp")
    partial.write_text(json.dumps({"ts": time.time(), "ok": ok, "error": error}), encoding="utf-8")
    os.replace(partial, status_path(output))


def probe(output: Path, kind: str, interval_s: float, now: float | None = None) -> tuple[bool, str]:
    """`alive`: the loop polled within 3 intervals + 30 s (the API's timeout included). `ready`: that,
    and its last poll succeeded. Returns (passed, why)."""
    try:
        status = json.loads(status_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, f"no status yet: {exc}"
    age = (time.time() if now is None else now) - float(status["ts"])
    if age > 3 * interval_s + TIMEOUT_S * 3:
        return False, f"last poll {age:.0f} s ago"
    if kind == "ready" and not status["ok"]:
        return False, f"last poll failed: {status['error']}"
    return True, "ok"


def poll_once(args: argparse.Namespace, fetch: Fetch) -> bool:
    try:
        groups = discover(fetch, args.namespace, args.service, args.port)
    except DiscoveryError as exc:
        log("discovery_failed", error=str(exc), kept=str(args.output))
        record_status(args.output, False, str(exc))
        return False
    if write_atomically(args.output, groups):
        log("targets_written", targets=[group["targets"][0] for group in groups], file=str(args.output))
    record_status(args.output, True)
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write the endpoints of Kubernetes Services as a Prometheus file_sd file (a cluster "
        "without DNS; Prometheus built without kubernetes_sd_configs).",
    )
    parser.add_argument("--namespace", required=True, help="the Services' namespace")
    parser.add_argument("--service", action="append", required=True, help="a Service's name (repeatable)")
    parser.add_argument("--port", required=True, help="the Service port's name to scrape (e.g. http)")
    parser.add_argument("--output", type=Path, required=True, help="the file_sd JSON file to write")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    parser.add_argument("--once", action="store_true", help="poll once; exit 1 if it failed")
    parser.add_argument(
        "--probe",
        choices=("alive", "ready"),
        help="a container probe: exit 0 if the running loop polled lately (alive) and its last poll "
        "succeeded (ready), else 1; polls nothing itself",
    )
    parser.add_argument(
        "--api-url", default=default_api_url(), help="the API server (default: the in-cluster address)"
    )
    parser.add_argument(
        "--token-file", type=Path, default=SERVICE_ACCOUNT_DIR / "token", help="bearer token ('' for none)"
    )
    parser.add_argument("--ca-file", type=Path, default=SERVICE_ACCOUNT_DIR / "ca.crt", help="the API's CA")
    args = parser.parse_args(argv)
    if args.probe:
        return args  # a probe reads the status file only
    if not args.api_url:
        parser.error("no --api-url and KUBERNETES_SERVICE_HOST is unset (not in a pod?)")
    if urllib.parse.urlparse(args.api_url).scheme not in ("http", "https"):
        parser.error(f"--api-url must be http(s)://, not {args.api_url!r}")
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    if str(args.token_file) in ("", "."):
        args.token_file = None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 (--once: polled and wrote; --probe: passed), 1 (--once: the poll failed; --probe:
    failed), 2 (bad arguments)."""
    args = parse_args(argv)
    if args.probe:
        passed, why = probe(args.output, args.probe, args.interval)
        print(why, file=sys.stderr)
        return 0 if passed else 1
    fetch = http_fetch(args.api_url, args.token_file, args.ca_file)
    if args.once:
        return 0 if poll_once(args, fetch) else 1
    log("started", namespace=args.namespace, services=args.service, api=args.api_url)
    while True:
        poll_once(args, fetch)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
