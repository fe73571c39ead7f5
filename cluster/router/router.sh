#!/usr/bin/env bash
# The cluster's router: Traefik built from its Go module, run as a host process with the cluster's
# kubeconfig. It moves real requests by the program's Gateway API HTTPRoutes (weighted backendRefs)
# and by its nginx canary Ingresses (Traefik's ingress-nginx provider reads the
# nginx.ingress.kubernetes.io/canary* annotations), sending them straight to pod/endpoint IPs from
# EndpointSlices. Why Traefik: docs/infra.md "Router".
#
#   router.sh build    build (cached by version under ~/.cache/active-immune-core/traefik-<version>/)
#   router.sh up       build if needed, start, create GatewayClass/Gateway/IngressClass, wait until ready
#   router.sh down     stop the process by its recorded PID
#   router.sh status   exit 0 running and answering, 3 stopped, 1 running but not answering
#
# Pins (cluster/versions.env; the environment wins, which is how the tests use private ports):
# TRAEFIK_VERSION, ROUTER_GATEWAY_PORT (Gateway listener = entry point "gateway"), ROUTER_INGRESS_PORT
# (Ingress entry point "ingress"), ROUTER_ADMIN_PORT (entry point "traefik": ping and the read-only
# API), all three on 127.0.0.1; ROUTER_METRICS_PORT (entry point "metrics": Prometheus /metrics with
# per-service and per-entry-point labels) on ROUTER_METRICS_HOST, default CNI_BRIDGE_IP (the cluster
# bridge's gateway = the node IP, there once `scripts/cluster.sh up` has run): the stack's Prometheus
# runs in a pod and cannot reach the host's 127.0.0.1, so the router's series are served on the
# project's own bridge address (monitoring.routerScrapeTarget, docs/infra.md "Router (local cluster)").
# The tests with a private control plane and no bridge set ROUTER_METRICS_HOST=127.0.0.1.
# KUBECONFIG: taken from the environment, else from `scripts/cluster.sh env`.
# AIC_CLUSTER_STATE (default ~/.local/state/active-immune-core/cluster): logs/ and router/ (pid,
# config) live there. ROUTER_GATEWAY_NAMESPACE/ROUTER_GATEWAY_NAME: where `up` declares the Gateway.
# The platform gateway's auth, aggregated health and rate limit (docs/infra.md "The platform gateway")
# are Traefik Middleware objects of the Pulumi program: `up` applies Traefik's CRDs (crds/, vendored
# for TRAEFIK_VERSION), enables the kubernetesCRD provider (which serves Middlewares to the Gateway API
# provider's ExtensionRef filters) and loads the local plugin plugins-local/ (Yaegi, nothing fetched).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$repo/cluster/router"

# versions.env gives defaults; a variable already in the environment is kept.
while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
    [[ -n "${!key+x}" ]] || export "$key=$value"
done < "$repo/cluster/versions.env"
: "${TRAEFIK_VERSION:?} ${ROUTER_GATEWAY_PORT:?} ${ROUTER_INGRESS_PORT:?} ${ROUTER_ADMIN_PORT:?}"
: "${GATEWAY_API_VERSION:?} ${ROUTER_METRICS_PORT:?} ${CNI_BRIDGE_IP:?}"
ROUTER_METRICS_HOST="${ROUTER_METRICS_HOST:-$CNI_BRIDGE_IP}"
ROUTER_GATEWAY_NAMESPACE="${ROUTER_GATEWAY_NAMESPACE:-immune-gateway}"
ROUTER_GATEWAY_NAME="${ROUTER_GATEWAY_NAME:-immune-gateway}"

cache="$HOME/.cache/active-immune-core/traefik-${TRAEFIK_VERSION}"
binary="$cache/traefik"
state="${AIC_CLUSTER_STATE:-$HOME/.local/state/active-immune-core/cluster}"
logs="$state/logs"
run="$state/router"
pidfile="$run/router.pid"
config="$run/traefik.yaml"
traefik_crds="$here/crds/traefik-${TRAEFIK_VERSION}.yaml"
# The platform gateway's plugin (module name = its path under plugins-local/src/).
PLUGIN_NAME=immunegateway
PLUGIN_MODULE=github.com/active-immune-core/immunegateway

log() { printf '[router] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The proxy refuses a few modules that Traefik 3.7 requires (403 "not available"): the SDKs behind
# 13 of lego's ~180 ACME DNS providers, and the containous/go-http-auth fork at the commit 3.7 pins.
# ACME is never used here (nothing leaves the machine), so those providers are left out of lego's
# provider switch; go-http-auth takes the fork's commit that Traefik 3.6 pins (same API, used only by
# the basic/digest auth middlewares, which the program never declares).
LEGO_UNSERVED_PROVIDERS="alidns aliesa azion dnsimple edgedns edgeone huaweicloud oraclecloud regfish sakuracloud tencentcloud ucloud yandexcloud"
GO_HTTP_AUTH_SERVED="github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e"

module_dir() { (cd / && go mod download -json "$1") | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'; }

# A writable copy of a module from the module cache (checksums verified by `go mod download`).
copy_module() {
    local dir
    dir=$(module_dir "$1")
    [[ -d "$dir" ]] || die "go mod download $1 gave no directory"
    rm -rf "$2"
    cp -r "$dir" "$2"
    chmod -R u+w "$2"
}

patch_source() {
    local src=$1 lego
    # webui/static is embedded; the module zip ships only a placeholder file there (upstream builds the
    # dashboard with yarn). Guard against a zip without it. The dashboard is off (api.dashboard: false).
    if [[ -z "$(ls -A "$src/webui/static" 2> /dev/null)" ]]; then
        mkdir -p "$src/webui/static"
        printf 'Dashboard assets are not part of this build.\n' > "$src/webui/static/README.md"
    fi
    # 3.7 replaces github.com/traefik/traefik/dynamic/ext with ./pkg/config/dynamic/ext, a nested module
    # (so not in the zip): upstream's extension point, empty types embedded inline in dynamic.HTTP and
    # dynamic.Router. Declared here empty, as upstream ships it.
    if grep -q '^replace github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext' "$src/go.mod" &&
        [[ ! -f "$src/pkg/config/dynamic/ext/go.mod" ]]; then
        mkdir -p "$src/pkg/config/dynamic/ext"
        printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' > "$src/pkg/config/dynamic/ext/go.mod"
        printf '// Package ext: extension point of the dynamic configuration (empty in open-source builds).\npackage ext\n\n// HTTP extends dynamic.HTTP.\ntype HTTP struct{}\n\n// Router extends dynamic.Router.\ntype Router struct{}\n' \
            > "$src/pkg/config/dynamic/ext/ext.go"
    fi
    if grep -q 'github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20260804094822-b975dcaa8c48' "$src/go.mod"; then
        (cd "$src" && go mod edit -replace "github.com/abbot/go-http-auth=${GO_HTTP_AUTH_SERVED}")
    fi
    lego=$(sed -n 's#^\s*github.com/go-acme/lego/v5 \(v[^ ]*\)$#\1#p' "$src/go.mod" | head -n 1)
    if [[ -n "$lego" ]]; then
        copy_module "github.com/go-acme/lego/v5@$lego" "$cache/lego"
        awk -v drop="$LEGO_UNSERVED_PROVIDERS" '
            BEGIN { n = split(drop, names, " "); for (i = 1; i <= n; i++) skip[names[i]] = 1 }
            /^\t"github.com\/go-acme\/lego\/v5\/providers\/dns\/[a-z0-9]+"$/ {
                name = $0; sub(/.*\/dns\//, "", name); sub(/"$/, "", name)
                if (name in skip) next
            }
            /^\tcase "/ { held = $0; next }
            /^\t\treturn [a-z0-9]+\.NewDNSProvider\(\)$/ {
                name = $0; sub(/^\t\treturn /, "", name); sub(/\..*/, "", name)
                if (!(name in skip)) { print held; print }
                held = ""; next
            }
            { if (held != "") { print held; held = "" } print }
        ' "$cache/lego/providers/dns/zz_gen_dns_providers.go" > "$cache/lego/providers/dns/zz.tmp"
        mv "$cache/lego/providers/dns/zz.tmp" "$cache/lego/providers/dns/zz_gen_dns_providers.go"
        (cd "$src" && go mod edit -replace "github.com/go-acme/lego/v5=$cache/lego")
    fi
}

build() {
    if [[ -x "$binary" ]]; then
        return 0
    fi
    mkdir -p "$cache"
    exec 8> "$cache.lock"
    flock 8
    [[ -x "$binary" ]] && return 0
    local started src="$cache/src"
    started=$(date +%s)
    log "building Traefik ${TRAEFIK_VERSION} from its Go module (a cold build takes many minutes)"
    copy_module "github.com/traefik/traefik/v3@${TRAEFIK_VERSION}" "$src"
    patch_source "$src"
    (
        cd "$src"
        # -mod=mod: the replacements above add go.sum lines (verified against the checksum database).
        GOFLAGS=-mod=mod go build -trimpath -o "$binary.tmp" \
            -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION}" \
            ./cmd/traefik
    ) >&2
    mv "$binary.tmp" "$binary"
    rm -rf "$src" "$cache/lego"
    log "built $binary in $(($(date +%s) - started)) s"
}

kubeconfig() {
    if [[ -z "${KUBECONFIG:-}" && -f "$repo/scripts/cluster.sh" ]]; then
        eval "$(bash "$repo/scripts/cluster.sh" env)"
    fi
    [[ -n "${KUBECONFIG:-}" && -r "${KUBECONFIG%%:*}" ]] ||
        die "no kubeconfig: set KUBECONFIG or bring the cluster up (scripts/cluster.sh up)"
    export KUBECONFIG
}

kubectl_cmd() { "${KUBECTL:-kubectl}" "$@"; }

# The recorded PID, if that process is still our Traefik (a recycled PID is never signalled).
running_pid() {
    [[ -f "$pidfile" ]] || return 1
    local pid exe
    pid=$(< "$pidfile")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2> /dev/null) || return 1
    [[ "$exe" == "$binary" ]] || return 1
    echo "$pid"
}

answering() { curl -fsS --max-time 2 "http://127.0.0.1:${ROUTER_ADMIN_PORT}/ping" > /dev/null 2>&1; }

write_config() {
    mkdir -p "$run" "$logs"
    # Static configuration. Nothing leaves the machine: version checks and usage reports are off.
    cat > "$config" << EOF
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  # Headers whose names alias another (X_Auth_User for X-Auth-User) are dropped, not forwarded.
  gateway:
    address: "127.0.0.1:${ROUTER_GATEWAY_PORT}"
    http:
      aliasHeadersStrategy: delete
  ingress:
    address: "127.0.0.1:${ROUTER_INGRESS_PORT}"
    http:
      aliasHeadersStrategy: delete
  traefik:
    address: "127.0.0.1:${ROUTER_ADMIN_PORT}"
  # Only /metrics: reachable from the cluster's pods (the stack's Prometheus), nothing else served here.
  metrics:
    address: "${ROUTER_METRICS_HOST}:${ROUTER_METRICS_PORT}"
ping:
  entryPoint: traefik
api:
  insecure: true
  dashboard: false
metrics:
  prometheus:
    entryPoint: metrics
    # traefik_service_* per Service (the canary analysis splits by colour on the service label) and
    # traefik_entrypoint_* per entry point: Traefik v3's defaults, stated so they cannot drift.
    addServicesLabels: true
    addEntryPointsLabels: true
log:
  level: INFO
  noColor: true
providers:
  kubernetesGateway:
    statusAddress:
      ip: "127.0.0.1"
  # Middleware objects (traefik.io/v1alpha1) for the HTTPRoutes' ExtensionRef filters.
  kubernetesCRD: {}
  kubernetesIngressNGINX:
    ingressClass: nginx
    controllerClass: k8s.io/ingress-nginx
    httpEntryPoint: ingress
    publishStatusAddress:
      - "127.0.0.1"
experimental:
  # Read from ./plugins-local/src/<moduleName>/ in the working directory (\$run); interpreted by Yaegi.
  localPlugins:
    ${PLUGIN_NAME}:
      moduleName: ${PLUGIN_MODULE}
EOF
}

# Gateway API CRDs when the cluster has none yet (the Pulumi program applies its vendored copy too;
# server-side apply makes the two agree), from the pinned release in the Go module proxy.
gateway_crds() {
    if kubectl_cmd get crd httproutes.gateway.networking.k8s.io > /dev/null 2>&1; then
        return 0
    fi
    local dir
    if [[ -d "$repo/infra/crds/gateway-api" ]]; then
        dir="$repo/infra/crds/gateway-api"
    else
        dir="$(module_dir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}")/config/crd/standard"
    fi
    log "applying Gateway API CRDs from $dir"
    kubectl_cmd apply --server-side -f "$dir" > /dev/null
    kubectl_cmd wait --for condition=Established --timeout 60s \
        crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
        crd/httproutes.gateway.networking.k8s.io > /dev/null
}

# Traefik's own CRDs (Middleware, ...), vendored for the pinned version: the kubernetesCRD provider
# needs them all installed to start its informers.
traefik_crds() {
    [[ -f "$traefik_crds" ]] || die "$traefik_crds missing: vendor the CRDs of Traefik ${TRAEFIK_VERSION} (see crds/)"
    kubectl_cmd apply --server-side -f "$traefik_crds" > /dev/null
    kubectl_cmd wait --for condition=Established --timeout 60s crd/middlewares.traefik.io > /dev/null
}

# The local plugin's source in the router's working directory (a copy: `up` refreshes it).
plugin_source() {
    local target="$run/plugins-local/src/$PLUGIN_MODULE"
    rm -rf "$run/plugins-local"
    mkdir -p "$(dirname "$target")"
    cp -r "$here/plugins-local/src/$PLUGIN_MODULE" "$target"
    rm -f "$target"/*_test.go
}

declare_objects() {
    gateway_crds
    traefik_crds
    sed -e "s/@GATEWAY_PORT@/${ROUTER_GATEWAY_PORT}/g" \
        -e "s/@GATEWAY_NAMESPACE@/${ROUTER_GATEWAY_NAMESPACE}/g" \
        -e "s/@GATEWAY_NAME@/${ROUTER_GATEWAY_NAME}/g" \
        "$here/objects.yaml" | kubectl_cmd apply --server-side -f - > /dev/null
}

# Traefik exits at start when an entry point cannot bind: say why before starting it.
metrics_address_present() {
    command -v ip > /dev/null 2>&1 || return 0
    ip -o -4 addr show | grep -qF " ${ROUTER_METRICS_HOST}/"
}

up() {
    build
    kubeconfig
    local pid
    if pid=$(running_pid); then
        log "already running (pid $pid)"
    else
        metrics_address_present ||
            die "no interface has ${ROUTER_METRICS_HOST} (ROUTER_METRICS_HOST): bring the cluster up first (scripts/cluster.sh up creates its bridge)"
        write_config
        declare_objects
        plugin_source
        # setsid: the router outlives this shell and is stopped only by `down` (by PID). Its working
        # directory is $run: Traefik reads local plugins from ./plugins-local/.
        (cd "$run" && exec setsid "$binary" --configFile="$config" >> "$logs/router.log" 2>&1 < /dev/null) &
        pid=$!
        echo "$pid" > "$pidfile"
        log "started pid $pid (log $logs/router.log)"
    fi
    local i
    for i in $(seq 1 300); do
        if answering; then
            log "ready: gateway http://127.0.0.1:${ROUTER_GATEWAY_PORT}, ingress http://127.0.0.1:${ROUTER_INGRESS_PORT}, metrics http://${ROUTER_METRICS_HOST}:${ROUTER_METRICS_PORT}/metrics"
            return 0
        fi
        kill -0 "$pid" 2> /dev/null || die "router exited; see $logs/router.log"
        sleep 0.1
    done
    die "router did not answer on 127.0.0.1:${ROUTER_ADMIN_PORT}/ping within 30 s; see $logs/router.log"
}

down() {
    local pid i
    if ! pid=$(running_pid); then
        rm -f "$pidfile"
        log "not running"
        return 0
    fi
    kill -TERM "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2> /dev/null; then
        log "pid $pid ignored SIGTERM for 10 s; killing"
        kill -KILL "$pid"
    fi
    rm -f "$pidfile"
    log "stopped pid $pid"
}

status() {
    local pid
    if ! pid=$(running_pid); then
        echo "router: stopped"
        return 3
    fi
    if answering; then
        echo "router: running pid $pid, gateway 127.0.0.1:${ROUTER_GATEWAY_PORT}, ingress 127.0.0.1:${ROUTER_INGRESS_PORT}, admin 127.0.0.1:${ROUTER_ADMIN_PORT}, metrics ${ROUTER_METRICS_HOST}:${ROUTER_METRICS_PORT}"
        return 0
    fi
    echo "router: pid $pid is not answering on 127.0.0.1:${ROUTER_ADMIN_PORT}"
    return 1
}

case "${1:-}" in
    build) build ;;
    up) up ;;
    down) down ;;
    status) status ;;
    *)
        echo "usage: $0 build|up|down|status" >&2
        exit 2
        ;;
esac
