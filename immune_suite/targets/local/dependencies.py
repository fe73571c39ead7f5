"""The service's dependencies on the local stack: embedded, or the real local services.

In `services` mode the connection settings come from `scripts/services/<name>.sh env`, the one
place that knows generated passwords; they are passed on through private env files only.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from immune_suite.paths import SERVICES_DIR

SERVICES = ("postgres", "redis", "kafka")


def parse_env_lines(text: str) -> dict[str, str]:
    """`KEY=VALUE` or `export KEY=VALUE` lines (values optionally quoted) into a dict."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


SERVICE_VARIABLES = {
    "postgres": "IMMUNE_DATABASE_URL",
    "redis": "IMMUNE_REDIS_URL",
    "kafka": "IMMUNE_KAFKA_BOOTSTRAP_SERVERS",
}


def services_env(services_dir: Path = SERVICES_DIR, services: tuple[str, ...] = SERVICES) -> dict[str, str]:
    """The IMMUNE_* settings that point the service at the running local PostgreSQL/Redis/Kafka.

    Settings already in the environment win (`eval "$(scripts/services/up.sh ...)"` exports them,
    and a caller with its own IMMUNE_STATE_DIR could not ask the scripts for them); the rest come
    from each service script's `env` command.
    """
    env: dict[str, str] = {}
    for name in services:
        variable = SERVICE_VARIABLES.get(name)
        if variable and os.environ.get(variable):
            env[variable] = os.environ[variable]
            continue
        script = services_dir / f"{name}.sh"
        if not script.is_file():
            raise FileNotFoundError(f"{script} is missing: cannot use real dependencies")
        output = subprocess.run(  # noqa: S603
            ["bash", str(script), "env"],  # noqa: S607
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        env.update({k: v for k, v in parse_env_lines(output).items() if k.startswith("IMMUNE_")})
    return env
