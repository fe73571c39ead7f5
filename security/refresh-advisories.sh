#!/usr/bin/env bash
# Rebuild security/advisories/pypa-advisory-db.json.xz (and its NOTICE) from the PyPA advisory database.
#   bash security/refresh-advisories.sh            shallow-clone the upstream repository (needs a network)
#   bash security/refresh-advisories.sh PATH       from a local checkout or copy (git, or README naming commit)
# IMMUNE_ADVISORY_UPSTREAM overrides the repository URL. Offline it fails clearly; the snapshot is untouched.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
upstream="${IMMUNE_ADVISORY_UPSTREAM:-https://github.com/pypa/advisory-database.git}"
snapshot="$root/security/advisories/pypa-advisory-db.json.xz"
current="$(cd "$root" && "$python" -m immune_suite.gates.advisory_snapshot show "$snapshot" 2>/dev/null || echo "none")"

if [[ $# -ge 1 ]]; then
  checkout="$1"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "refresh-advisories: cloning $upstream (shallow)" >&2
  if ! GIT_TERMINAL_PROMPT=0 timeout 600 git clone --quiet --depth 1 "$upstream" "$work/advisory-database"; then
    echo "refresh-advisories: cannot fetch $upstream (no network to it?); the snapshot was NOT refreshed." >&2
    echo "refresh-advisories: current snapshot: $current" >&2
    exit 1
  fi
  checkout="$work/advisory-database"
fi
cd "$root"
"$python" -m immune_suite.gates.advisory_snapshot build --from "$checkout" --out "$snapshot"
echo "refresh-advisories: was: $current" >&2
echo "refresh-advisories: review and commit security/advisories/; drop an accept_stale entry in" \
     "security/advisories/policy.yaml that no longer applies." >&2
