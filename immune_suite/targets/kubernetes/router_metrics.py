"""The router's own per-Service counters on the cluster: what Traefik says it sent to each Service.

The canary's samples are attributed by the router (`X-Immune-Served-By`), and the step record keeps the
router's counters over the window beside them as the proxy's own evidence (gates/attribution.py),
as the local stack does with HAProxy's `show stat`. Traefik counts every request it forwarded per
leaf service, its own 502/504 for a backend it could not reach included
(`traefik_service_requests_total{service, code}`, `traefik_service_retries_total{service}`; Traefik's
metrics reference: https://doc.traefik.io/traefik/v3.7/reference/install-configuration/observability/metrics/).

Leaf service names (Traefik v3.7 source):
- Gateway API (pkg/provider/kubernetes/gateway/httproute.go, `loadService`):
  `<router>-svc-<namespace>-<Service>-<backendIndex>@kubernetesgateway`;
- ingress-nginx (pkg/provider/kubernetes/ingress-nginx/build.go, translator.go):
  `<namespace>-<Ingress>-<Service>-<port name or number>@kubernetesingressnginx` for an Ingress's
  backend, and that name plus `-canary` for the canary Ingress's backend of the same host (the
  preview Service in this program).
Seen live on the local cluster (tests/cluster/test_router.py, test_deploy.py):
`httproute-immune-staging-immune-core-gw-…-ep-gateway-1-<hash>-svc-immune-staging-immune-core-preview-1@kubernetesgateway`,
`immune-staging-immune-core-immune-core-http-canary@kubernetesingressnginx`. The platform gateway's
route (`immune-core-platform`) forwards to the stable Service too: its leaves count under stable,
which served them.
`provider.Normalize` turns every character outside `[a-zA-Z0-9]` into `-`, which Kubernetes names
(DNS labels) already are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx
from immune_infra.immune_app import BASELINE_SERVICE, PREVIEW_SERVICE, STABLE_SERVICE
from prometheus_client.parser import text_string_to_metric_families

from immune_suite.gates.attribution import BASELINE, IngressCounters
from immune_suite.targets.base import TargetError

REQUESTS = "traefik_service_requests"  # counter family name (the parser drops `_total`)
RETRIES = "traefik_service_retries"
# What Traefik answers itself when it cannot get a response from the server it chose: 502 Bad Gateway
# (connection refused/reset, broken response) and 504 Gateway Timeout (pkg/proxy/httputil/proxy.go,
# `ErrorHandler`). The service never answers these, so they count as the proxy's failures.
PROXY_FAILURE_CODES = frozenset({"502", "504"})
SERVICES = (STABLE_SERVICE, PREVIEW_SERVICE, BASELINE_SERVICE)


def fetch(url: str, timeout_s: float = 5.0) -> str:
    """The router's metrics page (Prometheus text format) at `url`. Raises TargetError when it cannot
    be read (down, slow beyond `timeout_s`, non-200)."""
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise TargetError(f"router metrics at {url} unreadable: {exc}") from exc
    return response.text


def backend_service(label: str, namespace: str) -> str | None:
    """The Kubernetes Service (of this program's stable/preview/baseline) a leaf service label stands
    for in `namespace`, None for any other (another namespace's, a weighted parent, the API's own).

    >>> backend_service("route-svc-immune-staging-immune-core-preview-1@kubernetesgateway", "immune-staging")
    'immune-core-preview'
    """
    name = label.split("@", 1)[0]
    for service in SERVICES:
        if re.search(rf"-svc-{re.escape(namespace)}-{re.escape(service)}-\d+$", name):
            return service
        if re.fullmatch(nginx_leaf(namespace, service), name):
            return service
    if re.fullmatch(nginx_leaf(namespace, STABLE_SERVICE) + "-canary", name):
        return PREVIEW_SERVICE  # the canary Ingress's backend (ingress-nginx canary of the stable host)
    return None


def nginx_leaf(namespace: str, service: str) -> str:
    """The regex of ingress-nginx leaf names (without `@provider`) for `service` in `namespace`:
    `<namespace>-<Ingress>-<service>-<port>`, the port a name or number without `-` (this program's
    is `http`), so `immune-core-preview` never reads as `immune-core`."""
    return f"{namespace}-[a-z0-9-]+-{service}-[a-z0-9]+"


def service_regex(namespace: str, services: list[str]) -> str:
    """An RE2 regex (PromQL `=~`, anchored) of the leaf service labels that send to `services` in
    `namespace`, in either provider's naming (module docstring). Raises ValueError for a name that is
    not a Kubernetes DNS label (the only characters it can hold are also literal in a regex).

    >>> service_regex("ns", ["immune-core-preview"]).split("|")[0]
    '.+-svc-ns-immune-core-preview-[0-9]+@kubernetesgateway'
    """
    for name in (namespace, *services):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
            raise ValueError(f"{name!r} is not a Kubernetes name")
    patterns: list[str] = []
    for service in services:
        patterns.append(f".+-svc-{namespace}-{service}-[0-9]+@kubernetesgateway")
        patterns.append(f"{nginx_leaf(namespace, service)}@kubernetesingressnginx")
        if service == PREVIEW_SERVICE:
            patterns.append(f"{nginx_leaf(namespace, STABLE_SERVICE)}-canary@kubernetesingressnginx")
    return "|".join(patterns) or "$^"  # no Service: a regex no label matches


def per_service(text: str, namespace: str) -> dict[str, IngressCounters]:
    """Cumulative counters per Service of the stack in `namespace`, from the router's metrics `text`.

    Raises TargetError when the text is not the Prometheus exposition format, or when it carries no
    `traefik_service_requests_total` family at all (a router without per-service metrics enabled, or
    not Traefik: its counters would otherwise read as "nothing sent anywhere").
    """
    totals: dict[str, IngressCounters] = {}
    seen_requests = False
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise TargetError(f"router metrics are not in the Prometheus text format: {exc}") from exc
    for family in families:
        if family.name not in (REQUESTS, RETRIES):
            continue
        seen_requests = seen_requests or family.name == REQUESTS
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # `_created` timestamps, not counts
            service = backend_service(sample.labels.get("service", ""), namespace)
            if service is None:
                continue
            count = int(sample.value)
            if family.name == REQUESTS:
                code = sample.labels.get("code", "")
                add = IngressCounters(
                    responses=count,
                    responses_5xx=count if code.startswith("5") else 0,
                    failures=count if code in PROXY_FAILURE_CODES else 0,
                )
            else:
                add = IngressCounters(failures=count)
            totals[service] = totals.get(service, IngressCounters()) + add
    if not seen_requests:
        raise TargetError("router metrics carry no traefik_service_requests_total (per-service metrics off?)")
    return totals


def per_group(
    counters: Mapping[str, IngressCounters], colours: Mapping[str, str]
) -> dict[str, IngressCounters]:
    """Per group (`blue`, `green`, `baseline`): the counters of the Services that select it now.

    `colours`: `{stable Service: colour, preview Service: colour}` from their live selectors; the
    baseline Service is the baseline. Services that selected another colour earlier in the window
    are counted under their colour now: a window never spans a switch (the pipeline reads the
    counters around one canary step).
    """
    owners = {**colours, BASELINE_SERVICE: BASELINE}
    grouped: dict[str, IngressCounters] = {}
    for service, counted in counters.items():
        group = owners.get(service)
        if group is not None:
            grouped[group] = grouped.get(group, IngressCounters()) + counted
    return grouped
