"""PostgreSQL (official image): StatefulSet with a persistent volume, credentials from a Secret,
and postgres_exporter as a sidecar. The schema migration Job lives with the app (it runs the app's
image); it depends on this StatefulSet.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from immune_infra.config import PostgresSettings, StackSettings
from immune_infra.credentials import StackCredentials, url_secret
from immune_infra.footprint import POSTGRES_EXPORTER
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

PORT = 5432
EXPORTER_PORT = 9187
SERVICE_NAME = "postgres"
SECRET_NAME = "postgres-auth"  # noqa: S105  # nosec B105 # pragma: allowlist secret - an object name
URL_KEY = "url"


class Postgres(StoreComponent):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        credentials: StackCredentials,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("immune:postgres:Postgres", name, None, opts)
        postgres = settings.postgres
        password = credentials.postgres_password
        self.secret_name = SECRET_NAME
        self.url_key = URL_KEY
        spec = StoreSpec(
            service_name=SERVICE_NAME,
            secret_name=SECRET_NAME,
            port_name="postgres",
            port=PORT,
            exporter_port=EXPORTER_PORT,
            labels=labels("postgres", "database"),
            pod_spec=_pod_spec(postgres),
            storage=postgres.storage,
            storage_class=postgres.storage_class,
        )

        def secret_data(host: pulumi.Output[str]) -> dict[str, pulumi.Input[str]]:
            url = f"postgresql://{postgres.user}:{{password}}@{{host}}:{PORT}/{postgres.database}"
            return {"username": postgres.user, "password": password, URL_KEY: url_secret(url, password, host)}

        self._declare_store(name, spec, settings, namespace, provider, secret_data)


def _pod_spec(postgres: PostgresSettings) -> k8s.core.v1.PodSpecArgsDict:
    return {
        "automount_service_account_token": MOUNT_API_TOKEN,
        "security_context": pod_security_context(),
        "termination_grace_period_seconds": 60,
        "containers": [_postgres_container(postgres), _exporter_container(postgres)],
        "volumes": [empty_dir("run", "16Mi"), empty_dir("tmp", "256Mi")],
    }


def _postgres_container(postgres: PostgresSettings) -> k8s.core.v1.ContainerArgsDict:
    ready_command = [
        "sh",
        "-c",
        f"pg_isready -h 127.0.0.1 -p {PORT} -U {postgres.user} -d {postgres.database}",
    ]
    return {
        "name": "postgres",
        "image": postgres.image,
        "image_pull_policy": "IfNotPresent",
        "env": [
            plain_env("POSTGRES_DB", postgres.database),
            secret_env("POSTGRES_USER", SECRET_NAME, "username"),
            secret_env("POSTGRES_PASSWORD", SECRET_NAME, "password"),
            # A subdirectory: initdb refuses a volume root holding lost+found.
            plain_env("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ],
        "ports": [{"name": "postgres", "container_port": PORT}],
        "readiness_probe": {"exec": {"command": ready_command}, "period_seconds": 10},
        "liveness_probe": {
            "exec": {"command": ready_command},
            "initial_delay_seconds": 30,
            "period_seconds": 20,
            "failure_threshold": 6,
        },
        "resources": resources(postgres.resources),
        "security_context": container_security_context(),
        "volume_mounts": [
            mount("data", "/var/lib/postgresql/data"),
            mount("run", "/var/run/postgresql"),
            mount("tmp", TMP_PATH),
        ],
    }


def _exporter_container(postgres: PostgresSettings) -> k8s.core.v1.ContainerArgsDict:
    env = [
        plain_env("DATA_SOURCE_URI", f"127.0.0.1:{PORT}/{postgres.database}?sslmode=disable"),
        secret_env("DATA_SOURCE_USER", SECRET_NAME, "username"),
        secret_env("DATA_SOURCE_PASS", SECRET_NAME, "password"),
    ]
    return exporter_container(
        "postgres-exporter", postgres.exporter_image, env, EXPORTER_PORT, "/", POSTGRES_EXPORTER
    )
