#!/usr/bin/env bash
# `pulumi up` of a stack (staging or prod) FOR REAL into the local Kubernetes cluster (scripts/cluster.sh).
#
# Usage: cluster-deploy.sh {up|check|destroy|outputs|env|stack-file} <stack>
#   up       writes the project copy's Pulumi.<stack>.yaml (the committed one + the local cluster's
#            overrides, third-party images by digest from scripts/images.sh's images.json), sets the
#            stack's secrets, and runs `pulumi up` (the Kubernetes provider waits for every workload
#            to be Ready; a failed rollout makes `up` fail), then waits until every autoscaled
#            Deployment is Ready at its HPA's floor (IMMUNE_READY_WAIT_S, default 300 s).
#   check    a second `pulumi up --expect-no-changes`, then asserts the engine's change summary of that
#            update is all `same` (exit 1 and the summary otherwise).
#   destroy  `pulumi destroy`, then waits for the namespace and its pods to be gone (exit 1 if not).
#   outputs  the stack's outputs as JSON (secrets stay "[secret]").
#   stack-file  rewrites the project copy's Pulumi.<stack>.yaml as `up` writes it (the committed rollout
#            and the stack's secrets: what a fresh checkout of the repository has) without touching the
#            stack: a promotion must then take the rollout state from the stack's outputs
#            (tests/cluster/test_promote.py).
#   env      KEY=value lines a caller needs (KUBECONFIG, namespace, the secrets file, the project copy,
#            the backend URL and the passphrase file: what the Automation API needs to drive the stack).
# IMMUNE_DEPLOY_OVERRIDES=<file.json>: settings merged last by `up` (e.g. a rollout image to try).
#
# State (outside the repo): $IMMUNE_STATE_DIR/deploy/ (default ~/.local/state/active-immune-core/deploy):
#   backend/            the Pulumi file backend (`pulumi login file://...`)
#   passphrase          the secrets provider's passphrase (generated once, mode 0600, never printed)
#   secrets-<stack>.env the stack's generated secrets (mode 0600), read back by the smoke test
#   project/            a copy of the project: Pulumi.yaml + stack files copied, infra/, app/, .venv linked
# The committed Pulumi.<stack>.yaml files keep the public images (for users with a registry).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_ROOT="${IMMUNE_STATE_DIR:-$HOME/.local/state/active-immune-core}"
DEPLOY="$STATE_ROOT/deploy"
PROJECT="$DEPLOY/project"
PYTHON="$REPO_ROOT/.venv/bin/python"
# The Gateway the router declares (cluster/router/objects.yaml, docs/infra.md "Router").
GATEWAY_NAMESPACE="${IMMUNE_GATEWAY_NAMESPACE:-immune-gateway}"
DESTROY_WAIT_S="${IMMUNE_DESTROY_WAIT_S:-180}"
READY_WAIT_S="${IMMUNE_READY_WAIT_S:-300}"

log() { printf '[cluster-deploy] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

usage() { die "usage: $0 {up|check|destroy|outputs|env|stack-file} staging|prod"; }
[[ $# -eq 2 ]] || usage
ACTION="$1"
STACK="$2"
[[ "$STACK" == staging || "$STACK" == prod ]] || usage

mkdir -p "$DEPLOY/backend"
chmod 700 "$DEPLOY"

# The engine (scripts/pulumi-engine.sh) and the cluster's kubectl/KUBECONFIG.
bash "$REPO_ROOT/scripts/pulumi-engine.sh" status >/dev/null || die "Pulumi engine not built: bash scripts/pulumi-engine.sh build"
eval "$(bash "$REPO_ROOT/scripts/pulumi-engine.sh" env)"
eval "$(bash "$REPO_ROOT/scripts/cluster.sh" env)"
[[ -n "${KUBECONFIG:-}" && -f "$KUBECONFIG" ]] || die "no cluster kubeconfig: bash scripts/cluster.sh up"

export PULUMI_BACKEND_URL="file://$DEPLOY/backend"
# The Kubernetes provider writes the kubeconfig it is given into a new temporary file each time it is
# configured (for Helm) and never removes it: a private TMPDIR, removed on exit, keeps /tmp clean.
TMPDIR="$(mktemp -d -t immune-deploy.XXXXXX)"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true
if [[ ! -s "$DEPLOY/passphrase" ]]; then
    (umask 077 && openssl rand -hex 32 >"$DEPLOY/passphrase")
fi
export PULUMI_CONFIG_PASSPHRASE_FILE="$DEPLOY/passphrase"
unset PULUMI_CONFIG_PASSPHRASE

SECRETS="$DEPLOY/secrets-$STACK.env"
NAMESPACE="immune-$STACK"

# `--stack` is a flag of each subcommand, so it goes after the caller's arguments.
pulumi_stack() { pulumi --cwd "$PROJECT" --non-interactive "$@" --stack "$STACK"; }

make_project() {
    mkdir -p "$PROJECT"
    cp "$REPO_ROOT/Pulumi.yaml" "$PROJECT/Pulumi.yaml"
    local name
    for name in infra app .venv; do
        ln -sfn "$REPO_ROOT/$name" "$PROJECT/$name"
    done
}

make_secrets() {
    [[ -s "$SECRETS" ]] && return 0
    # apiTokens: one ingest+read token (the smoke test's) and one operator token (docs/service.md "Roles").
    (
        umask 077
        {
            printf 'postgresPassword=%s\n' "$(openssl rand -hex 18)"
            printf 'redisPassword=%s\n' "$(openssl rand -hex 18)"
            printf 'grafanaAdminPassword=%s\n' "$(openssl rand -hex 18)"
            printf 'apiTokens=%s:ingest+read,%s:ingest+read+operate\n' "$(openssl rand -hex 24)" "$(openssl rand -hex 24)"
        } >"$SECRETS"
    )
}

# The stack file: the committed one, the local cluster's overrides merged in (immune_infra.local_cluster,
# images by digest from images.json), and the salt of the stack's passphrase provider kept across runs.
write_stack_file() {
    local file="$PROJECT/Pulumi.$STACK.yaml" salt="" context
    [[ -f "$file" ]] && salt="$(grep '^encryptionsalt:' "$file" || true)"
    cp "$REPO_ROOT/Pulumi.$STACK.yaml" "$file"
    [[ -n "$salt" ]] && printf '%s\n' "$salt" >>"$file"
    context="$(bash "$REPO_ROOT/scripts/images.sh" context)"
    IMAGES_JSON="$STATE_ROOT/images/images.json" PYTHONPATH="$REPO_ROOT/infra:$REPO_ROOT" \
        "$PYTHON" -m immune_suite.targets.kubernetes.local_deploy \
        --stack "$STACK" --context "$context" --gateway-namespace "$GATEWAY_NAMESPACE" --write "$file" \
        ${IMMUNE_DEPLOY_OVERRIDES:+--overrides "$IMMUNE_DEPLOY_OVERRIDES"}
}

set_secrets() {
    local line key
    while IFS= read -r line; do
        key="${line%%=*}"
        # The value goes through stdin: never on a command line (ps) nor in a log.
        printf '%s' "${line#*=}" | pulumi_stack config set --secret "$key" >/dev/null
    done <"$SECRETS"
}

# `pulumi up` returns once each Deployment's rollout is done at the count it had then. A Deployment the
# program leaves to its HorizontalPodAutoscaler is created at the API server's default of 1 replica and
# the HPA, created after it, raises it to its floor only afterwards (prod: 3 pods per colour seen not
# Ready when `up` returned). So `up` also waits until every autoscaled Deployment runs at least its
# HPA's floor, all updated and Ready (exit 1 naming the Deployment and its pods otherwise).
wait_autoscaled() {
    local deadline=$((SECONDS + READY_WAIT_S)) target floor state replicas ready updated pending
    while :; do
        pending=""
        while read -r target floor; do
            [[ -n "$target" ]] || continue
            state="$(kubectl get deployment "$target" -n "$NAMESPACE" \
                -o jsonpath='{.spec.replicas} {.status.readyReplicas} {.status.updatedReplicas}')"
            read -r replicas ready updated <<<"$state"
            if ((${replicas:-0} < floor || ${ready:-0} < ${replicas:-0} || ${updated:-0} < ${replicas:-0})); then
                pending+=" $target(replicas=${replicas:-0} floor=$floor ready=${ready:-0} updated=${updated:-0})"
            fi
        done < <(kubectl get hpa -n "$NAMESPACE" \
            -o jsonpath='{range .items[*]}{.spec.scaleTargetRef.name} {.spec.minReplicas}{"\n"}{end}')
        [[ -z "$pending" ]] && break
        ((SECONDS < deadline)) || die "not Ready at the HPA floor after ${READY_WAIT_S}s:$pending; pods: $(kubectl get pods -n "$NAMESPACE" --no-headers 2>&1 | awk '{ split($2, n, "/") } (n[1] != n[2] || $3 != "Running") && $3 != "Completed"' | head -10 | tr '\n' ';')"
        sleep 2
    done
    log "every autoscaled Deployment Ready at its HPA floor"
}

case "$ACTION" in
up)
    make_project
    make_secrets
    write_stack_file
    pulumi_stack stack select --create >/dev/null
    set_secrets
    log "pulumi up $STACK (namespace $NAMESPACE)"
    pulumi_stack up --yes --skip-preview
    wait_autoscaled
    ;;
check)
    log "second pulumi up $STACK: must change nothing"
    pulumi_stack up --yes --skip-preview --expect-no-changes
    pulumi_stack stack history --json --show-secrets=false | "$PYTHON" -c '
import json, sys
last = json.load(sys.stdin)[0]
changes = last.get("resourceChanges") or {}
if last.get("result") != "succeeded" or not changes or set(changes) != {"same"}:
    result = last.get("result")
    print(f"[cluster-deploy] ERROR: second up changed something: {result} {changes}", file=sys.stderr)
    raise SystemExit(1)
print(f"[cluster-deploy] idempotent: {changes}", file=sys.stderr)
'
    ;;
destroy)
    pulumi_stack destroy --yes --skip-preview
    log "waiting for namespace $NAMESPACE to be gone"
    deadline=$((SECONDS + DESTROY_WAIT_S))
    while kubectl get namespace "$NAMESPACE" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "namespace $NAMESPACE still present after ${DESTROY_WAIT_S}s: $(kubectl get pods -n "$NAMESPACE" --no-headers 2>&1 | head -5)"
        sleep 2
    done
    left="$(kubectl get pods -A --no-headers 2>/dev/null | awk -v ns="$NAMESPACE" '$1 == ns' | wc -l)"
    [[ "$left" -eq 0 ]] || die "$left pods left in $NAMESPACE"
    log "destroyed: namespace $NAMESPACE and its pods gone"
    ;;
outputs)
    pulumi_stack stack output --json
    ;;
stack-file)
    # A checkout's stack file carries the stack's (encrypted) secrets: set again, as `up` sets them.
    make_project
    make_secrets
    write_stack_file
    pulumi_stack stack select --create >/dev/null
    set_secrets
    log "rewrote $PROJECT/Pulumi.$STACK.yaml from the committed one (the stack itself is untouched)"
    ;;
env)
    printf 'KUBECONFIG=%s\nNAMESPACE=%s\nSECRETS_FILE=%s\nPROJECT=%s\nBACKEND_URL=%s\nPASSPHRASE_FILE=%s\n' \
        "$KUBECONFIG" "$NAMESPACE" "$SECRETS" "$PROJECT" "$PULUMI_BACKEND_URL" "$PULUMI_CONFIG_PASSPHRASE_FILE"
    ;;
*)
    usage
    ;;
esac
