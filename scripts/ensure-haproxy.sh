#!/usr/bin/env bash
# Installs HAProxy (the local stack's Ingress) from Debian's packages when it is missing. Idempotent.
set -euo pipefail
if command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]]; then
    exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "ensure-haproxy: installing haproxy" >&2
    apt-get install -y -q haproxy >&2 || { apt-get update -q >&2 && apt-get install -y -q haproxy >&2; }
else
    echo "ensure-haproxy: HAProxy is required: install it (e.g. sudo apt-get install haproxy)" >&2
    exit 2
fi
