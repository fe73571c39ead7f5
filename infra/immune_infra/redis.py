"""Redis (official image): one StatefulSet pod with AOF persistence, a password, and redis_exporter.

The password reaches Redis through a config file in a Secret (not `--requirepass` on the command
line, which any process in the pod could read from /proc) and reaches clients through secretKeyRef.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import RedisSettings, StackSettings
from immune_infra.credentials import StackCredentials, url_secret
from immune_infra.footprint import REDIS_EXPORTER
from immune_infra.store import StoreComponent, StoreSpec
from immune_infra.workload import (
    MOUNT_API_TOKEN,
    TMP_PATH,
    container_security_context,
    empty_dir,
    exporter_container,
    labels,
    mount,
    plain_env,
    pod_security_context,
    resources,
    secret_env,
)

PORT = 6379
EXPORTER_PORT = 9121
SERVICE_NAME = "redis"
SECRET_NAME = "redis-auth"  # noqa: S105  # nosec B105 # pragma: allowlist secret - an object name
URL_KEY = "url"


def _server_config(password: str) -> str:
    lines = [
        f"requirepass {password}",
        "appendonly yes",
        "appendfsync everysec",
        "dir /data",
        "protected-mode no",
        f"port {PORT}",
    ]
    return "\n".join(lines) + "\n"


class Redis(StoreComponent):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        credentials: StackCredentials,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("immune:redis:Redis", name, None, opts)
        redis = settings.redis
        password = credentials.redis_password
        config_file: pulumi.Output[str] = pulumi.Output.secret(password.apply(_server_config))
        self.secret_name = SECRET_NAME
        self.url_key = URL_KEY
        spec = StoreSpec(
            service_name=SERVICE_NAME,
            secret_name=SECRET_NAME,
            port_name="redis",
            port=PORT,
            exporter_port=EXPORTER_PORT,
            labels=labels("redis", "cache"),
            pod_spec=_pod_spec(redis),
            storage=redis.storage,
            storage_class=redis.storage_class,
        )

        def secret_data(host: pulumi.Output[str]) -> dict[str, pulumi.Input[str]]:
            url = url_secret(f"redis://:{{password}}@{{host}}:{PORT}/0", password, host)
            return {"password": password, "redis.conf": config_file, URL_KEY: url}

        self._declare_store(name, spec, settings, namespace, provider, secret_data)


def _pod_spec(redis: RedisSettings) -> k8s.core.v1.PodSpecArgsDict:
    return {
        "automount_service_account_token": MOUNT_API_TOKEN,
        "security_context": pod_security_context(),
        "containers": [_redis_container(redis), _exporter_container(redis)],
        "volumes": [
            {
                "name": "config",
                "secret": {
                    "secret_name": SECRET_NAME,
                    "items": [{"key": "redis.conf", "path": "redis.conf"}],
                    "default_mode": 0o440,
                },
            },
            empty_dir("tmp"),
        ],
    }


def _redis_container(redis: RedisSettings) -> k8s.core.v1.ContainerArgsDict:
    return {
        "name": "redis",
        "image": redis.image,
        "image_pull_policy": "IfNotPresent",
        "command": ["redis-server", "/etc/redis/redis.conf"],
        "env": [secret_env("REDISCLI_AUTH", SECRET_NAME, "password")],
        "ports": [{"name": "redis", "container_port": PORT}],
        "readiness_probe": {
            "exec": {"command": ["sh", "-c", "redis-cli ping | grep -q PONG"]},
            "period_seconds": 10,
        },
        "liveness_probe": {
            "exec": {"command": ["sh", "-c", "redis-cli ping | grep -q PONG"]},
            "initial_delay_seconds": 20,
            "period_seconds": 20,
        },
        "resources": resources(redis.resources),
        "security_context": container_security_context(),
        "volume_mounts": [
            mount("data", "/data"),
            mount("config", "/etc/redis", read_only=True),
            mount("tmp", TMP_PATH),
        ],
    }


def _exporter_container(redis: RedisSettings) -> k8s.core.v1.ContainerArgsDict:
    env = [
        plain_env("REDIS_ADDR", f"redis://127.0.0.1:{PORT}"),
        secret_env("REDIS_PASSWORD", SECRET_NAME, "password"),
    ]
    return exporter_container(
        "redis-exporter", redis.exporter_image, env, EXPORTER_PORT, "/health", REDIS_EXPORTER
    )
