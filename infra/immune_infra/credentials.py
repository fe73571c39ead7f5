"""Credentials: Pulumi secrets read once, kept as secret Outputs, and only ever stored in k8s Secrets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

import pulumi

from immune_infra.config import REGISTRY_PASSWORD_KEY, SECRET_KEYS


@dataclass(frozen=True)
class StackCredentials:
    postgres_password: pulumi.Output[str]
    redis_password: pulumi.Output[str]
    api_tokens: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]

    @staticmethod
    def from_config(config: pulumi.Config) -> StackCredentials:
        values = {key: config.require_secret(key) for key in SECRET_KEYS}
        return StackCredentials(
            postgres_password=values["postgresPassword"],
            redis_password=values["redisPassword"],
            api_tokens=values["apiTokens"],
            grafana_admin_password=values["grafanaAdminPassword"],
        )


def service_token_entries(api_tokens: str) -> str:
    """`apiTokens` (`<token>[:<role>+<role>]`, comma-separated) as the service's hashed entries.

    The service accepts `sha256:<hex>[:<roles>]` (immune_core.api.tokens), so the cluster's Secret holds
    only digests: the plain tokens stay in the Pulumi stack's encrypted config, where the pipeline reads
    the one each client needs. Entries already hashed pass unchanged.
    """
    entries = []
    for entry in (part.strip() for part in api_tokens.split(",")):
        if not entry:
            continue
        if entry.startswith("sha256:"):
            entries.append(entry)
            continue
        token, _, roles = entry.partition(":")
        hashed = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
        entries.append(f"{hashed}:{roles}" if roles else hashed)
    return ",".join(entries)


def registry_password(config: pulumi.Config) -> pulumi.Output[str]:
    return config.require_secret(REGISTRY_PASSWORD_KEY)


def url_secret(
    template: str, password: pulumi.Output[str], host: pulumi.Input[str] | None = None
) -> pulumi.Output[str]:
    """Fill `{password}` (percent-encoded) and `{host}` (a DNS name or, without cluster DNS, a Service's
    ClusterIP known only after it is created) in a connection URL, and keep the result secret."""
    if host is None:
        return pulumi.Output.secret(
            password.apply(lambda value: template.format(password=quote(value, safe="")))
        )
    return pulumi.Output.secret(
        pulumi.Output.all(password, host).apply(
            lambda values: template.format(password=quote(values[0], safe=""), host=values[1])
        )
    )
