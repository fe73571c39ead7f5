#!/usr/bin/env bash
# The project's main job: promote the working tree onto the local stack through every gate.
#   bash scripts/main.sh [immune-suite promote args...]      e.g. --ref HEAD~1, --json
# Sets up what it needs on a fresh Debian/Ubuntu machine (virtualenv, HAProxy, the local
# PostgreSQL/Redis/Kafka when the stack config asks for real dependencies, Prometheus when it has
# `metrics:` checks), then runs
# `immune-suite promote --stack ${IMMUNE_STACK:-local}`. The exit code is immune-suite's
# (0 promoted, 3 a gate failed and it rolled back, ...; see docs/pipeline.md).
set -euo pipefail
cd "$(dirname "$0")/.."

stack="${IMMUNE_STACK:-local}"
step() { printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)" >&2; }

step "python environment"
bash scripts/bootstrap.sh

step "haproxy (the local stack's Ingress)"
bash scripts/ensure-haproxy.sh

dependencies=$(.venv/bin/python -c "from immune_suite.stack_config import load_stack; print(load_stack('$stack').dependencies)")
if [[ "$dependencies" == "services" ]]; then
    step "local services: postgres redis kafka"
    eval "$(bash scripts/services/up.sh postgres redis kafka)"
fi

metrics=$(.venv/bin/python -c "from immune_suite.stack_config import load_stack; print(load_stack('$stack').metrics is not None)")
if [[ "$metrics" == "True" ]]; then
    step "local services: prometheus (the canary's metric checks)"
    eval "$(bash scripts/services/up.sh prometheus)"
fi

step "promote the working tree on the '$stack' stack"
.venv/bin/immune-suite plan --stack "$stack" >&2
exec .venv/bin/immune-suite promote --stack "$stack" "$@"
