#!/usr/bin/env bash
# Builds the real Pulumi engine from Go modules (through the Go module proxy) and lays it out with a
# project-local PULUMI_HOME, cached outside the repository by version.
#
#   scripts/pulumi-engine.sh build    build what is missing (idempotent; a warm cache returns in seconds)
#   scripts/pulumi-engine.sh env      print `export` lines (PATH, PULUMI_HOME, ...): eval "$(scripts/pulumi-engine.sh env)"
#   scripts/pulumi-engine.sh env --plain   the same as NAME=VALUE lines, PATH expanded (read by Python)
#   scripts/pulumi-engine.sh path     print the engine directory (bin/ and home/ below it)
#   scripts/pulumi-engine.sh status   exit 0 when the engine is built, 1 otherwise
#
# What is built (versions in scripts/pulumi-engine/versions.env, the one place they are pinned):
#   bin/pulumi                        github.com/pulumi/pulumi/pkg/v3/cmd/pulumi (wrapper module cli/)
#   bin/pulumi-language-python        the Python language host (module langhost/, see docs/engine.md)
#   bin/pulumi-language-python-exec   the exec shim shipped in the sdk/v3 module (python/cmd/)
#   bin/pulumi-resource-pulumi-python runs Python dynamic providers (infra/immune_infra/engine_image.py) in
#                                     the project's virtualenv: pulumi-engine/pulumi-resource-pulumi-python
#                                     (finds the venv relative to Pulumi.yaml), which runs the SDK's shim
#                                     (sdk/v3 python/dist/, installed as pulumi-resource-pulumi-python-sdk)
#   home/plugins/resource-kubernetes-v<KUBERNETES_PLUGIN_VERSION>/pulumi-resource-kubernetes
#                                     github.com/pulumi/pulumi-kubernetes/provider/v4, `go generate` + `go build`
#
# Cache: ${IMMUNE_CACHE_DIR:-$HOME/.cache/active-immune-core}/pulumi-engine-<hash>/ where <hash> covers the
# pinned versions and the wrapper sources; each component also has its own keyed directory under
# pulumi-engine-parts/ so that changing one component does not rebuild the others.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/pulumi-engine"
# shellcheck source=pulumi-engine/versions.env
source "$SRC/versions.env"

CACHE_ROOT="${IMMUNE_CACHE_DIR:-$HOME/.cache/active-immune-core}"
PARTS="$CACHE_ROOT/pulumi-engine-parts"
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
GO_BUILD_FLAGS=(-trimpath)

log() { printf '[pulumi-engine] %s\n' "$*" >&2; }

# Temporary build directories of this run; removed on exit whatever happens (finished ones were renamed).
TMP_DIRS=()
cleanup() { local d; for d in "${TMP_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
new_tmp() { NEW_TMP="$(mktemp -d "$1")"; TMP_DIRS+=("$NEW_TMP"); }

hash_of() {
    # Hash of the given files' contents (and their names, so renames count too).
    local f
    for f in "$@"; do
        printf '%s\n' "${f#"$SRC"/}"
        cat "$f"
    done | sha256sum | cut -c1-16
}

cli_key() { hash_of "$SRC/versions.env" "$SRC/cli/go.mod"; }
langhost_key() {
    hash_of "$SRC/versions.env" "$SRC/langhost/go.mod" "$SRC"/langhost/*.go "$SRC/pulumi-resource-pulumi-python"
}
kubernetes_key() { hash_of "$SRC/versions.env"; }
engine_key() { printf '%s %s %s\n' "$(cli_key)" "$(langhost_key)" "$(kubernetes_key)" | sha256sum | cut -c1-16; }
engine_dir() { printf '%s/pulumi-engine-%s\n' "$CACHE_ROOT" "$(engine_key)"; }

check_pins() {
    # The wrapper go.mod files must require exactly the pinned release.
    local mod
    for mod in "$SRC/cli/go.mod" "$SRC/langhost/go.mod"; do
        if ! grep -q "github.com/pulumi/pulumi/sdk/v3 v${PULUMI_CLI_VERSION}\$" "$mod"; then
            log "$mod does not require sdk/v3 v${PULUMI_CLI_VERSION} (versions.env)"; exit 1
        fi
    done
    if ! grep -q "github.com/pulumi/pulumi/pkg/v3 v${PULUMI_CLI_VERSION}\$" "$SRC/cli/go.mod"; then
        log "cli/go.mod does not require pkg/v3 v${PULUMI_CLI_VERSION} (versions.env)"; exit 1
    fi
    local have
    have="$(go env GOVERSION)"; have="${have#go}"
    if [ "$(printf '%s\n%s\n' "$ENGINE_GO_MIN" "$have" | sort -V | head -1)" != "$ENGINE_GO_MIN" ]; then
        log "Go $have is older than $ENGINE_GO_MIN"; exit 1
    fi
}

# Each builder writes into a fresh temporary directory and renames it into place only when complete,
# so an interrupted build never leaves a half-built component that looks finished.
build_cli() {
    local out="$PARTS/cli-$(cli_key)"
    [ -x "$out/pulumi" ] && return 0
    log "building pulumi CLI v${PULUMI_CLI_VERSION} (pkg/v3 cmd/pulumi)"
    new_tmp "$PARTS/.cli.XXXXXX"; local tmp="$NEW_TMP"
    cp "$SRC/cli/go.mod" "$tmp/go.mod"
    [ -f "$SRC/cli/go.sum" ] && cp "$SRC/cli/go.sum" "$tmp/go.sum"
    (cd "$tmp" && go build "${GO_BUILD_FLAGS[@]}" \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${PULUMI_CLI_VERSION}" \
        -o "$tmp/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    rm -rf "$out"; mv "$tmp" "$out"
}

build_langhost() {
    local out="$PARTS/langhost-$(langhost_key)"
    [ -x "$out/pulumi-language-python" ] && [ -f "$out/pulumi-language-python-exec" ] \
        && [ -x "$out/pulumi-resource-pulumi-python" ] && [ -x "$out/pulumi-resource-pulumi-python-sdk" ] \
        && return 0
    log "building pulumi-language-python (sdk/v3 v${PULUMI_CLI_VERSION})"
    new_tmp "$PARTS/.langhost.XXXXXX"; local tmp="$NEW_TMP"
    cp "$SRC/langhost/go.mod" "$SRC"/langhost/*.go "$tmp/"
    [ -f "$SRC/langhost/go.sum" ] && cp "$SRC/langhost/go.sum" "$tmp/go.sum"
    (cd "$tmp" && go build "${GO_BUILD_FLAGS[@]}" \
        -ldflags "-s -w -X main.version=${PULUMI_CLI_VERSION}" -o "$tmp/pulumi-language-python" .)
    local sdkdir
    sdkdir="$(cd "$tmp" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
    # The shims are part of the sdk/v3 module at the same release; take them from the module cache.
    install -m 0755 "$sdkdir/python/cmd/pulumi-language-python-exec" "$tmp/pulumi-language-python-exec"
    install -m 0755 "$sdkdir/python/dist/pulumi-resource-pulumi-python" "$tmp/pulumi-resource-pulumi-python-sdk"
    install -m 0755 "$SRC/pulumi-resource-pulumi-python" "$tmp/pulumi-resource-pulumi-python"
    rm -rf "$out"; mv "$tmp" "$out"
}

build_kubernetes() {
    local out="$PARTS/kubernetes-$(kubernetes_key)"
    [ -x "$out/pulumi-resource-kubernetes" ] && return 0
    log "building pulumi-resource-kubernetes from ${KUBERNETES_PROVIDER_MODULE}@${KUBERNETES_PROVIDER_MODULE_VERSION}"
    new_tmp "$PARTS/.kubernetes.XXXXXX"; local tmp="$NEW_TMP"
    local moddir
    moddir="$(cd "$tmp" && go mod download -json \
        "${KUBERNETES_PROVIDER_MODULE}@${KUBERNETES_PROVIDER_MODULE_VERSION}" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -d "$moddir" ] || { log "module download failed"; exit 1; }
    # The module cache is read-only and `go generate` writes the embedded schema next to main.go.
    cp -r "$moddir" "$tmp/provider"
    chmod -R u+w "$tmp/provider"
    (
        cd "$tmp/provider"
        # The repository builds against its sibling sdk/ directory (replace => ../sdk), which is not part of
        # the provider module; use the published sdk/v4 module at the version the provider requires instead.
        go mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4
        (cd cmd/pulumi-resource-kubernetes && VERSION="${KUBERNETES_PROVIDER_BUILD_VERSION}" go generate ./...)
        go build "${GO_BUILD_FLAGS[@]}" \
            -ldflags "-s -w -X ${KUBERNETES_PROVIDER_MODULE}/pkg/version.Version=${KUBERNETES_PROVIDER_BUILD_VERSION}" \
            -o "$tmp/bin/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes
    )
    mkdir -p "$tmp/out"
    mv "$tmp/bin/pulumi-resource-kubernetes" "$tmp/out/"
    rm -rf "$out"; mv "$tmp/out" "$out"; rm -rf "$tmp"
}

assemble() {
    local dir; dir="$(engine_dir)"
    [ -f "$dir/.complete" ] && return 0
    log "assembling $dir"
    new_tmp "$CACHE_ROOT/.pulumi-engine.XXXXXX"; local tmp="$NEW_TMP"
    mkdir -p "$tmp/bin" "$tmp/home"
    cp "$PARTS/cli-$(cli_key)/pulumi" "$tmp/bin/"
    # The Automation API checks this string: it must be the pinned release, stamped through -ldflags.
    local reported; reported="$(PULUMI_SKIP_UPDATE_CHECK=1 "$tmp/bin/pulumi" version)"
    if [ "$reported" != "v${PULUMI_CLI_VERSION}" ]; then
        log "the built CLI reports $reported, expected v${PULUMI_CLI_VERSION}"; exit 1
    fi
    cp "$PARTS/langhost-$(langhost_key)/pulumi-language-python" \
       "$PARTS/langhost-$(langhost_key)/pulumi-language-python-exec" \
       "$PARTS/langhost-$(langhost_key)/pulumi-resource-pulumi-python" \
       "$PARTS/langhost-$(langhost_key)/pulumi-resource-pulumi-python-sdk" "$tmp/bin/"
    # Install the provider with the CLI itself so the plugin directory is laid out exactly as the
    # engine expects; the version is the one the pulumi-kubernetes Python package requests.
    PULUMI_HOME="$tmp/home" PULUMI_SKIP_UPDATE_CHECK=1 "$tmp/bin/pulumi" plugin install resource kubernetes \
        "${KUBERNETES_PLUGIN_VERSION}" --file "$PARTS/kubernetes-$(kubernetes_key)/pulumi-resource-kubernetes" \
        >&2
    rm -rf "$dir"; mv "$tmp" "$dir"
    # Absolute paths in the environment below point at the final directory, not the temporary one.
    touch "$dir/.complete"
}

engine_vars() {
    # NAME=VALUE lines, one per variable; PATH is handled by the callers.
    local dir; dir="$(engine_dir)"
    printf '%s\n' \
        "PULUMI_ENGINE_DIR=$dir" \
        "PULUMI_HOME=$dir/home" \
        "PULUMI_SKIP_UPDATE_CHECK=true" \
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true" \
        "PULUMI_SKIP_CONFIRMATIONS=true"
}

print_env() {
    # `env` prints shell exports; `env --plain` prints NAME=VALUE with PATH already expanded (for Python).
    local dir; dir="$(engine_dir)"
    if [ "${1:-}" = "--plain" ]; then
        engine_vars
        printf 'PATH=%s\n' "$dir/bin:$PATH"
    else
        engine_vars | sed 's/^\([A-Z_]*\)=\(.*\)$/export \1="\2"/'
        printf 'export PATH="%s:$PATH"\n' "$dir/bin"
    fi
}

main() {
    local cmd="${1:-build}"
    case "$cmd" in
        build)
            check_pins
            mkdir -p "$PARTS"
            # One build at a time per cache (parallel test runs may call this together).
            exec 9>"$CACHE_ROOT/.pulumi-engine.lock"
            flock 9
            local start=$SECONDS
            build_cli
            build_kubernetes
            build_langhost
            assemble
            log "engine ready in $(engine_dir) ($((SECONDS - start)) s)"
            ;;
        build-part)
            # One component only (cli, langhost or kubernetes); used to build components in parallel.
            check_pins
            mkdir -p "$PARTS"
            "build_${2:?component}"
            ;;
        env) print_env "${2:-}" ;;
        path) engine_dir ;;
        status) [ -f "$(engine_dir)/.complete" ] ;;
        *) echo "usage: $0 build|env|path|status" >&2; exit 2 ;;
    esac
}

# `exit` on the same line: bash has read the whole file before running, so editing it mid-build is safe.
main "$@"; exit $?
