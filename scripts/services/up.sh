#!/usr/bin/env bash
# Installs (when not cached) and starts the named local services, or all of them, then prints
# `export` lines for their IMMUNE_* settings:   eval "$(scripts/services/up.sh)"
# Services start in parallel; progress and errors go to stderr, only the exports to stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
all_services=(postgres redis kafka prometheus)
services=("$@")
((${#services[@]} > 0)) || services=("${all_services[@]}")

for name in "${services[@]}"; do
    [[ -f "$here/$name.sh" && "$name" != lib && "$name" != up ]] ||
        { echo "up.sh: unknown service '$name' (known: ${all_services[*]})" >&2; exit 2; }
done

declare -A starters=()
for name in "${services[@]}"; do
    bash "$here/$name.sh" start >&2 &
    starters[$name]=$!
done

failed=()
for name in "${services[@]}"; do
    wait "${starters[$name]}" || failed+=("$name")
done
if ((${#failed[@]} > 0)); then
    echo "up.sh: failed to start: ${failed[*]}" >&2
    exit 1
fi

for name in "${services[@]}"; do
    bash "$here/$name.sh" env | sed 's/^/export /'
done
