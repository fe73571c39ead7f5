#!/usr/bin/env bash
# Run checkov from its own virtualenv: checkov pins versions of boto3, networkx, pydantic, ...
# that conflict with the project's venv, so it lives in a cache folder keyed by its version.
# Usage: scripts/checkov.sh install            (idempotent)
#        scripts/checkov.sh [checkov args...]   (installs on first use, then runs checkov)
set -euo pipefail

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
CACHE_DIR="${IMMUNE_CACHE_DIR:-$HOME/.cache/active-immune-core}"
VENV="$CACHE_DIR/checkov-$CHECKOV_VERSION"
PYTHON="${CHECKOV_PYTHON:-python3}"

install_checkov() {
  if [[ -x "$VENV/bin/checkov" ]] && [[ -f "$VENV/.installed" ]]; then
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  # The marker is written last, so an interrupted install is redone from scratch.
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
  touch "$VENV/.installed"
}

if [[ "${1:-}" == "install" ]]; then
  install_checkov
  echo "$VENV/bin/checkov"
  exit 0
fi

install_checkov
# Offline by design: no policy downloads, no telemetry, no version check.
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
exec "$VENV/bin/checkov" --skip-download "$@"
