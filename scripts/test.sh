#!/usr/bin/env bash
# The project's test command (README line 2, called by .ci/run): sets up everything it needs, then runs
# the linters and every test against real PostgreSQL, Redis, Kafka, Prometheus and the Pulumi engine.
#   bash scripts/test.sh [pytest args...]
# IMMUNE_SKIP_ENGINE=1 skips building the Pulumi engine (and its tests skip, saying so).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "python environment"
bash scripts/bootstrap.sh

step "haproxy (the local stack's Ingress)"
bash scripts/ensure-haproxy.sh

step "local services: postgres redis kafka prometheus"
# Started here so a broken install fails fast; the tests take the URLs from their fixtures.
bash scripts/services/up.sh postgres redis kafka prometheus >/dev/null

if [ "${IMMUNE_SKIP_ENGINE:-0}" != "1" ]; then
  step "pulumi engine (built from Go modules, cached)"
  bash scripts/pulumi-engine.sh build
fi

step "checkov (own virtualenv, cached)"
bash scripts/checkov.sh install

step "lint: ruff check, ruff format --check, mypy --strict (service, suite, gate tools, Pulumi program)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy --strict app/immune_core immune_suite chaos/immune_chaos load/immune_load load/locustfile.py \
  infra/immune_infra infra/__main__.py
# A second run: the policy pack's entry point is also a `__main__` module, which one run cannot hold twice.
.venv/bin/mypy --strict infra/policy_pack/__main__.py

step "pytest"
mkdir -p out
set +e
.venv/bin/python -m pytest -p no:cacheprovider --junitxml=out/junit.xml "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
exit "$rc"
