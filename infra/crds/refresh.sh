#!/usr/bin/env bash
# Re-fetches the vendored CustomResourceDefinitions from their published Go modules (through the Go module
# proxy, checksums verified by `go mod download`) at the versions pinned in cluster/versions.env:
#   GATEWAY_API_VERSION          sigs.k8s.io/gateway-api                         config/crd/standard/*.yaml
#   PROMETHEUS_OPERATOR_VERSION  github.com/prometheus-operator/prometheus-operator  example/prometheus-operator-crd/
#                                (ServiceMonitor and PrometheusRule only: the kinds the program declares)
# Files are copied byte for byte; the program (immune_infra/crds.py) applies every CRD found here and the
# tests validate the program's objects against them. Run after changing a pin, then commit the result.
#   bash infra/crds/refresh.sh           fetch and replace
#   bash infra/crds/refresh.sh --check   exit 1 when the vendored files differ from the pinned release
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
versions="$root/cluster/versions.env"
check=0
[ "${1:-}" = "--check" ] && check=1

pin() {
    local value
    value="$(sed -n "s/^$1=\(.*\)$/\1/p" "$versions" | tail -n 1)"
    [ -n "$value" ] || { echo "refresh: $1 is not set in $versions" >&2; exit 1; }
    printf '%s\n' "$value"
}

module_dir() {
    # The module's extracted, checksum-verified copy in the Go module cache.
    local scratch dir
    scratch="$(mktemp -d)"
    dir="$(cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$1@$2" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    rm -rf "$scratch"
    [ -d "$dir" ] || { echo "refresh: go mod download $1@$2 failed" >&2; exit 1; }
    printf '%s\n' "$dir"
}

gateway_version="$(pin GATEWAY_API_VERSION)"
operator_version="$(pin PROMETHEUS_OPERATOR_VERSION)"
gateway_dir="$(module_dir sigs.k8s.io/gateway-api "$gateway_version")"
operator_dir="$(module_dir github.com/prometheus-operator/prometheus-operator "$operator_version")"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/gateway-api" "$out/prometheus-operator"
# Only the CustomResourceDefinitions of the standard channel (its ValidatingAdmissionPolicy file is not one).
for file in "$gateway_dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    grep -q '^kind: CustomResourceDefinition$' "$file" && cp "$file" "$out/gateway-api/"
done
for kind in servicemonitors prometheusrules; do
    cp "$operator_dir/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml" "$out/prometheus-operator/"
done
cp "$gateway_dir/LICENSE" "$out/gateway-api/LICENSE"
cp "$operator_dir/LICENSE" "$out/prometheus-operator/LICENSE"
cp "$operator_dir/NOTICE" "$out/prometheus-operator/NOTICE.upstream"
chmod -R u+w,go-w "$out"
find "$out" -type f -exec chmod 0644 {} +

if [ "$check" = 1 ]; then
    for part in gateway-api prometheus-operator; do
        diff -r "$out/$part" "$here/$part" >/dev/null \
            || { echo "refresh: infra/crds/$part differs from the pinned release" >&2; exit 1; }
    done
    echo "refresh: infra/crds matches gateway-api $gateway_version, prometheus-operator $operator_version"
    exit 0
fi
for part in gateway-api prometheus-operator; do
    rm -rf "${here:?}/$part"
    cp -r "$out/$part" "$here/$part"
done
echo "refresh: infra/crds from gateway-api $gateway_version, prometheus-operator $operator_version"
