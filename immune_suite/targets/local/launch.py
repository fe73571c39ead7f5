"""Start a service instance with its environment read from a private JSON file, then become it.

supervisord program sections would otherwise carry database passwords and API tokens in plain
text; the env file is 0600 in a 0700 directory. `exec` keeps the PID supervisord watches.

    python -m immune_suite.targets.local.launch ENV_FILE -- COMMAND [ARGS...]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: python -m immune_suite.targets.local.launch ENV_FILE -- COMMAND [ARGS...]")
    env_file, command = Path(argv[0]), argv[2:]
    overrides: dict[str, str] = json.loads(env_file.read_text(encoding="utf-8"))
    env = {**os.environ, **{key: str(value) for key, value in overrides.items()}}
    os.execve(command[0], command, env)  # noqa: S606 - the command comes from our own supervisord config


if __name__ == "__main__":
    main(sys.argv[1:])
