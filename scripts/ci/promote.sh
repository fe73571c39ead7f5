#!/usr/bin/env bash
# One promotion job of .github/workflows/promote.yml (staging, prod), the same script on a runner and on a
# laptop: tests/cluster/test_promote.py runs it against the local cluster. The workflow only sets the
# environment below and calls this script; no step of the job lives in YAML alone.
#
# Usage: scripts/ci/promote.sh --stack NAME --ref REV [--approve] [--by TEXT] [--out DIR]
#   --stack    a stack config of stacks/ (staging, prod; cluster for the local cluster)
#   --ref      the commit being promoted (the workflow passes $GITHUB_SHA)
#   --approve  record the approval GitHub's `production` environment has just given (prod)
#   --by       who promotes (default: $USER@host)
#   --out      where the report and the record copy go (default: out/promotion-<stack>)
#
# Environment (checked before anything runs; nothing here is ever printed):
#   IMMUNE_IMAGE_DIGEST         sha256:... of the image the build job pushed (scripts/ci/build-image.sh)
#   PULUMI_BACKEND_URL          where the stack's state lives (s3://..., gs://..., azblob://..., file://...,
#                               https://api.pulumi.com with PULUMI_ACCESS_TOKEN): shared by every run, so
#                               each promotion starts from the state the previous one left; checked with
#                               `pulumi whoami` before anything is promoted
#   PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE   the stack's secrets provider
#   IMMUNE_SIGNING_KEY or IMMUNE_SIGNING_KEY_FILE   for stacks that sign with a configured key (staging,
#                               prod): the private half of stacks/keys/<stack>.pub (`immune-suite promote`
#                               refuses to start without it, exit 2)
#   KUBECONFIG_DATA             optional: a kubeconfig's text, written with mode 0600 to $KUBECONFIG
#                               (default <out>/kubeconfig) and removed at exit
# Needs Go (actions/setup-go) for the Pulumi engine build, Python 3.11 and no root.
#
# Exit codes: those of `immune-suite promote` (docs/pipeline.md: 0 promoted, 3 rolled back, 4 aborted,
# 5 waiting for approval, 7 record does not verify, 10 rollback failed, ...); 2 for a usage or environment
# error found before anything ran (also when promote refused to start: then nothing is verified);
# 7 when the record just written does not verify.
set -euo pipefail
cd "$(dirname "$0")/../.."

die() {
  echo "promote.sh: $*" >&2
  exit 2
}
step() { printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

stack="" ref="" by="${USER:-ci}@$(hostname)" out="" approve=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --stack) stack="${2:-}"; shift 2 ;;
    --ref) ref="${2:-}"; shift 2 ;;
    --by) by="${2:-}"; shift 2 ;;
    --out) out="${2:-}"; shift 2 ;;
    --approve) approve=(--approve); shift ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$stack" ] || die "--stack is required"
[ -n "$ref" ] || die "--ref is required"
[ -f "stacks/$stack.yaml" ] || die "no stack config stacks/$stack.yaml"
[[ "${IMMUNE_IMAGE_DIGEST:-}" =~ ^sha256:[0-9a-f]{64}$ ]] ||
  die "IMMUNE_IMAGE_DIGEST must be the build job's image digest (sha256:<64 hex>)"
[ -n "${PULUMI_BACKEND_URL:-}" ] ||
  die "PULUMI_BACKEND_URL is required: a promotion must start from the state the previous one left"
[ -n "${PULUMI_CONFIG_PASSPHRASE:-}${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ] ||
  die "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE is required (the stack's secrets provider)"
out="${out:-out/promotion-$stack}"
mkdir -p "$out"

if [ -n "${KUBECONFIG_DATA:-}" ]; then
  export KUBECONFIG="${KUBECONFIG:-$PWD/$out/kubeconfig}"
  (umask 077 && printf '%s' "$KUBECONFIG_DATA" >"$KUBECONFIG")
  trap 'rm -f "$KUBECONFIG"' EXIT
fi

step "install: the suite's virtualenv and the Pulumi engine (cached)"
bash scripts/bootstrap.sh
bash scripts/pulumi-engine.sh build
eval "$(bash scripts/pulumi-engine.sh env)"

step "backend: the login to PULUMI_BACKEND_URL"
# Fails here, before any stack is touched, when the backend is unreachable or its credentials are wrong.
# The login is the environment (PULUMI_BACKEND_URL, PULUMI_ACCESS_TOKEN or the store's own credentials),
# which the Automation API reads too; `pulumi login` would also write the engine's shared PULUMI_HOME.
pulumi whoami --non-interactive >/dev/null || die "the Pulumi backend $PULUMI_BACKEND_URL cannot be used (above)"

step "immune-suite promote --stack $stack --ref $ref"
rc=0
.venv/bin/immune-suite promote --stack "$stack" --ref "$ref" --by "$by" "${approve[@]}" || rc=$?

case "$rc" in
  2 | 6) echo "promote.sh: stack $stack: nothing was promoted (exit $rc)" >&2; exit "$rc" ;;
esac
step "verify and report the record"
# The record must verify against the stack's committed key whatever the promotion's outcome.
.venv/bin/immune-suite verify latest --stack "$stack" || { [ "$rc" -ne 0 ] || rc=7; }
.venv/bin/immune-suite report latest --stack "$stack" --out "$out/promotion-$stack.html" || true
echo "promote.sh: stack $stack, exit $rc, report $out/promotion-$stack.html"
exit "$rc"
