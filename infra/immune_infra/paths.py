"""Where the Pulumi program finds the repository's files (the stack files, the app's build context, the
cluster's versions, the vendored CRDs): one root, so no module counts `parents[...]` of its own."""

from __future__ import annotations

from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
