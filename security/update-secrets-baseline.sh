#!/usr/bin/env bash
# Regenerate .secrets.baseline (detect-secrets) for the files git tracks, keeping earlier audit labels.
# Review new entries afterwards: `.venv/bin/detect-secrets audit .secrets.baseline` (mark each one real or not).
set -euo pipefail
cd "$(dirname "$0")/.."
exclude='(^|/)(\.venv|[^/]*\.egg-info|node_modules)/|(^|/)\.secrets\.baseline$'
if [[ -f .secrets.baseline ]]; then
  .venv/bin/detect-secrets scan --baseline .secrets.baseline --exclude-files "$exclude"
else
  .venv/bin/detect-secrets scan --exclude-files "$exclude" > .secrets.baseline
fi
echo ".secrets.baseline: $(python3 -c 'import json;print(sum(len(v) for v in json.load(open(".secrets.baseline"))["results"].values()))') entries" >&2
