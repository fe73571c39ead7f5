"""Helpers for the local target's tests."""

from __future__ import annotations

import re

from immune_suite.paths import REPO_ROOT


def locked_build_backend() -> str:
    """The build backend entries (setuptools, wheel and its packaging) of the repository's own lock."""
    blocks = re.split(r"\n(?=\S)", (REPO_ROOT / "requirements.lock").read_text())
    return "\n".join(b for b in blocks if b.startswith(("setuptools==", "wheel==", "packaging=="))) + "\n"
