#!/usr/bin/env bash
# The security job of .github/workflows/ci.yml, runnable locally: installs the suite and checkov, then runs
# the security gate over the checked-out tree (bandit, pip-audit on requirements.lock, detect-secrets
# against .secrets.baseline, checkov on the rendered stacks and the Dockerfile).
#
# Usage: scripts/ci/security-gate.sh [--out DIR]      (default out/security)
#   IMMUNE_ADVISORY_DB   optional: a checkout of github.com/pypa/advisory-database, used instead of the
#                        vendored snapshot (security/advisories/) when PyPI's vulnerability API is not reached
# Writes the gate's JSON, SARIF and logs to DIR. Exit codes: those of `python -m immune_suite.gates security`
# (0 pass, 1 a finding or a scanner that scanned nothing, 2 usage), 2 for a usage error here.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=out/security
while [ "$#" -gt 0 ]; do
  case "$1" in
    --out) out="${2:-}"; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "security-gate.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "security-gate.sh: --out needs a directory" >&2; exit 2; }

bash scripts/bootstrap.sh
bash scripts/checkov.sh install
exec .venv/bin/python -m immune_suite.gates security --source . --out "$out"
