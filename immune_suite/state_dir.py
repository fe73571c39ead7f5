"""Where the suite keeps its state: `${IMMUNE_STATE_DIR:-~/.local/state/active-immune-core}`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def state_root() -> Path:
    configured = os.environ.get("IMMUNE_STATE_DIR")
    root = Path(configured) if configured else Path.home() / ".local" / "state" / "active-immune-core"
    return root.expanduser()


def private_dir(path: Path) -> Path:
    """A directory only the owner can read (it holds keys, tokens and dependency credentials)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any, mode: int = 0o600) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
