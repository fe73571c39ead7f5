"""A real HTTP server speaking the few Kubernetes API calls the Kubernetes chaos experiments make.

Pods (list by label selector, delete; the "ReplicaSet" replaces a deleted pod at once unless told not
to) and StatefulSets (read/patch scale). Each StatefulSet owns a TCP listener on 127.0.0.1 that is open
while it has replicas: a service under test that depends on that port sees the "dependency" go away
when the experiment scales it to zero. The kubernetes client reaches it through a kubeconfig file.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class StatefulSet:
    name: str
    replicas: int = 1
    listener: socket.socket | None = None
    port: int = 0

    def apply(self) -> None:
        """Open the listener while there are replicas, close it at zero."""
        if self.replicas and self.listener is None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(64)
            self.port = sock.getsockname()[1]
            self.listener = sock
        elif not self.replicas and self.listener is not None:
            self.listener.close()
            self.listener = None


@dataclass
class Cluster:
    namespace: str
    pods: dict[str, dict[str, str]] = field(default_factory=dict)  # pod name -> labels
    statefulsets: dict[str, StatefulSet] = field(default_factory=dict)
    replace_deleted_pods: bool = True
    # Closed (scaled to zero) when a pod is deleted and not replaced: what the candidate loses.
    pods_listener: StatefulSet | None = None
    # The kubelet's liveness probe: while this URL does not answer 200, every pod's container is
    # restarted (its restartCount grows at each look), as a failing liveness probe would cause.
    liveness_url: str | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_pods(self, count: int, labels: dict[str, str]) -> None:
        for _ in range(count):
            self.pods[f"immune-core-{next(self._serial)}"] = dict(labels)

    def add_statefulset(self, name: str, replicas: int = 1) -> StatefulSet:
        statefulset = StatefulSet(name, replicas)
        statefulset.apply()
        self.statefulsets[name] = statefulset
        return statefulset


def _pod(namespace: str, name: str, labels: dict[str, str], restarts: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"containers": [{"name": "immune-core", "image": "immune-core:test"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "immune-core",
                    "image": "immune-core:test",
                    "imageID": "",
                    "ready": True,
                    "restartCount": restarts,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
            ],
        },
    }


def _endpoint_slices(namespace: str, pods: list[str]) -> dict[str, Any]:
    """One EndpointSlice listing every pod that exists: a deleted pod leaves it at once."""
    endpoint_slice = {
        "metadata": {"name": "immune-core-preview-abcde", "namespace": namespace},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": name, "namespace": namespace}}
            for name in pods
        ],
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {},
        "items": [endpoint_slice],
    }


def _scale(namespace: str, statefulset: StatefulSet) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": statefulset.name, "namespace": namespace},
        "spec": {"replicas": statefulset.replicas},
        "status": {"replicas": statefulset.replicas},
    }


def _statefulset(namespace: str, statefulset: StatefulSet) -> dict[str, Any]:
    labels = {"app": statefulset.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": statefulset.name, "namespace": namespace},
        "spec": {
            "replicas": statefulset.replicas,
            "serviceName": statefulset.name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": statefulset.name, "image": "x"}]},
            },
        },
        "status": {"replicas": statefulset.replicas},
    }


def _answers_200(url: str | None) -> bool:
    if url is None:
        return True
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _handler(cluster: Cluster) -> type[BaseHTTPRequestHandler]:
    pods_path = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")
    sts_path = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/statefulsets/([^/]+)(/scale)?$")
    slices_path = re.compile(r"^/apis/discovery.k8s.io/v1/namespaces/([^/]+)/endpointslices$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _not_found(self) -> None:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                    "message": f"{self.path} not found",
                },
            )

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if (match := pods_path.match(url.path)) and match.group(2) is None:
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                live = _answers_200(cluster.liveness_url)
                with cluster.lock:
                    if not live:
                        for name in cluster.pods:
                            cluster.restarts[name] = cluster.restarts.get(name, 0) + 1
                    items = [
                        _pod(cluster.namespace, name, labels, cluster.restarts.get(name, 0))
                        for name, labels in sorted(cluster.pods.items())
                        if match.group(1) == cluster.namespace and _matches(labels, selector)
                    ]
                self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
            elif (match := sts_path.match(url.path)) and match.group(2) in cluster.statefulsets:
                statefulset = cluster.statefulsets[match.group(2)]
                render = _scale if match.group(3) else _statefulset
                self._send(200, render(cluster.namespace, statefulset))
            elif (match := slices_path.match(url.path)) and match.group(1) == cluster.namespace:
                with cluster.lock:
                    names = sorted(cluster.pods)
                self._send(200, _endpoint_slices(cluster.namespace, names))
            else:
                self._not_found()

        def do_DELETE(self) -> None:
            match = pods_path.match(urlparse(self.path).path)
            self._body()
            with cluster.lock:
                if not match or match.group(2) not in cluster.pods:
                    self._not_found()
                    return
                labels = cluster.pods.pop(match.group(2))
                cluster.deleted.append(match.group(2))
                if cluster.replace_deleted_pods:
                    cluster.add_pods(1, labels)
                elif cluster.pods_listener is not None:
                    cluster.pods_listener.replicas = 0
                    cluster.pods_listener.apply()
            self._send(200, _pod(cluster.namespace, match.group(2), labels))

        def do_PATCH(self) -> None:
            match = sts_path.match(urlparse(self.path).path)
            body = self._body()
            if not match or match.group(2) not in cluster.statefulsets:
                self._not_found()
                return
            statefulset = cluster.statefulsets[match.group(2)]
            with cluster.lock:
                statefulset.replicas = int(body.get("spec", {}).get("replicas", statefulset.replicas))
                statefulset.apply()
            render = _scale if match.group(3) else _statefulset
            self._send(200, render(cluster.namespace, statefulset))

    return Handler


class FakeKubeApi:
    """Serves `cluster` on 127.0.0.1 (a free port) until `close()`; `kubeconfig` points a client at it."""

    def __init__(self, cluster: Cluster, directory: Path) -> None:
        self.cluster = cluster
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "fake-kube-token"}}],
                    "contexts": [
                        {
                            "name": "fake",
                            "context": {"cluster": "fake", "user": "fake", "namespace": cluster.namespace},
                        }
                    ],
                }
            )
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for statefulset in self.cluster.statefulsets.values():
            statefulset.replicas = 0
            statefulset.apply()
