"""A colour's readiness read from the cluster's live status, not assumed from what `pulumi up` awaited.

`pulumi up` returns once the Kubernetes provider saw the Deployment roll out at the count it had then:
a colour scaled up from 0 is "ready" with one pod while its HorizontalPodAutoscaler still has to add
the rest. Here the Deployment and its HPA are read through the Kubernetes API and judged the way
`kubectl rollout status` does (kubectl pkg/polymorphichelpers/rollout_status.go): the controller has
observed the current generation, every replica is updated, none of the old ones is left, and the
updated ones are available. The count wanted is the largest of the Deployment's `spec.replicas`, the
HPA's `status.desiredReplicas` and its `spec.minReplicas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from urllib3.exceptions import HTTPError

from immune_suite.targets.base import TargetError

# Requests to the API server: a slow or unreachable one is a target error, never a hang.
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LiveStatus:
    """Pods of one Deployment: `live` exist, `ready` are updated and available, `desired` are wanted.

    `complete` is kubectl's "successfully rolled out" (and at least one pod wanted); `detail` says why not.
    """

    live: int
    ready: int
    desired: int
    complete: bool
    detail: str


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def judge(deployment: Any, hpa: Any | None) -> LiveStatus:
    """The rollout status of `deployment` (a V1Deployment), its wanted count raised by `hpa` (or None).

    Pure: what `deployment_status` reads from the API, judged without another request.
    """
    generation = _int(deployment.metadata.generation)
    status = deployment.status
    observed = _int(status.observed_generation)
    spec_replicas = _int(deployment.spec.replicas)
    desired = spec_replicas
    if hpa is not None:
        desired = max(
            desired, _int(hpa.status.desired_replicas if hpa.status else 0), _int(hpa.spec.min_replicas)
        )
    live, updated = _int(status.replicas), _int(status.updated_replicas)
    available = _int(status.available_replicas)
    ready = min(updated, available)
    if observed < generation:
        return LiveStatus(live, 0, desired, False, f"generation {generation} not observed yet ({observed})")
    if desired == 0:
        return LiveStatus(live, 0, 0, False, "no replica wanted")
    if updated < desired:
        return LiveStatus(live, ready, desired, False, f"{updated} of {desired} replicas updated")
    if live > updated:
        return LiveStatus(live, ready, desired, False, f"{live - updated} old replicas pending termination")
    if available < updated:
        return LiveStatus(live, ready, desired, False, f"{available} of {updated} updated replicas available")
    return LiveStatus(live, ready, desired, True, f"rolled out: {ready}/{desired} ready (live status)")


def deployment_status(
    name: str, namespace: str, kubeconfig: str | None, timeout_s: float = REQUEST_TIMEOUT_S
) -> LiveStatus:
    """Read Deployment `name` and its HPA of the same name (if any) in `namespace` and judge them.

    `kubeconfig`: a kubeconfig path (None: the default, ~/.kube/config or KUBECONFIG's first file);
    `timeout_s`: per request, in seconds.
    Raises TargetError when the API cannot be reached, refuses the request or the Deployment is missing.
    """
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise TargetError(f"no usable kubeconfig ({kubeconfig or 'default'}): {exc}") from exc
    with api_client:
        apps, autoscaling = client.AppsV1Api(api_client), client.AutoscalingV2Api(api_client)
        try:
            deployment = apps.read_namespaced_deployment(name, namespace, _request_timeout=timeout_s)
        except client.ApiException as exc:
            raise TargetError(f"deployment {namespace}/{name}: HTTP {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:  # connection refused, timeout, a broken connection
            raise TargetError(f"deployment {namespace}/{name}: the API server is unreachable: {exc}") from exc
        except ValueError as exc:  # the client's models refuse an answer that is not a Deployment
            raise TargetError(f"deployment {namespace}/{name}: the API server's answer is malformed") from exc
        try:
            hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(
                name, namespace, _request_timeout=timeout_s
            )
        except client.ApiException as exc:
            if exc.status != 404:  # 404: a colour scaled away has no autoscaler
                raise TargetError(f"autoscaler {namespace}/{name}: HTTP {exc.status} {exc.reason}") from exc
            hpa = None
        except (HTTPError, OSError) as exc:
            raise TargetError(f"autoscaler {namespace}/{name}: the API server is unreachable: {exc}") from exc
        except ValueError as exc:
            raise TargetError(f"autoscaler {namespace}/{name}: the API server's answer is malformed") from exc
    # The client hands back the raw text when an answer is not the JSON of its type.
    if (
        not isinstance(deployment, client.V1Deployment)
        or deployment.metadata is None
        or deployment.spec is None
        or deployment.status is None
        or not (hpa is None or (isinstance(hpa, client.V2HorizontalPodAutoscaler) and hpa.spec is not None))
    ):
        raise TargetError(f"deployment {namespace}/{name}: the API server's answer is malformed")
    return judge(deployment, hpa)
