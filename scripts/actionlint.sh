#!/usr/bin/env bash
# Installs actionlint (the GitHub Actions workflow linter, https://github.com/rhysd/actionlint, MIT) from
# the Go module proxy into the cache, idempotently: tests/suite/gates/test_gates_workflows.py runs it on
# .github/workflows. Prints the binary's path.
#   bash scripts/actionlint.sh
set -euo pipefail

ACTIONLINT_VERSION=1.7.7
cache="${IMMUNE_CACHE_DIR:-$HOME/.cache/active-immune-core}"
tools="$cache/tools"
stamp="$tools/.actionlint-version"

if [[ ! -x "$tools/actionlint" || "$(cat "$stamp" 2>/dev/null || true)" != "$ACTIONLINT_VERSION" ]]; then
    command -v go >/dev/null || { echo "actionlint.sh: Go is required to build actionlint" >&2; exit 1; }
    mkdir -p "$tools"
    echo "actionlint.sh: building actionlint $ACTIONLINT_VERSION into $tools" >&2
    GOBIN="$tools" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
    printf '%s\n' "$ACTIONLINT_VERSION" >"$stamp"
fi
printf '%s\n' "$tools/actionlint"
