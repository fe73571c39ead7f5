#!/usr/bin/env bash
# The build job of .github/workflows/promote.yml: builds app/Dockerfile ONCE, pushes it and prints its
# digest, which both promotions then deploy (scripts/ci/promote.sh). The same script on a runner and here:
# tests/cluster/test_promote.py builds with it against the local images daemon and registry.
#
# Usage: scripts/ci/build-image.sh --revision SHA [--repository REPO] [--offline]
#   --revision    the commit built; the image's IMMUNE_VERSION is its first 10 characters (the release
#                 version the pipeline's smoke test expects in X-Immune-Version) and its OCI revision label
#   --repository  where to push (default: `settings.imageBuild.repository` of Pulumi.staging.yaml, the one
#                 name the program deploys from; staging and prod must agree, this script checks it)
#   --offline     no network: build from `scripts/images.sh context` (the sources and the hash-checked
#                 wheels of requirements.lock) on the project's own Python base, with the project's images
#                 daemon (`scripts/images.sh up`; DOCKER_HOST from `scripts/images.sh env` unless set)
# Prints `digest=sha256:...` and `image=REPO@sha256:...` on stdout (the build's log goes to stderr), and
# appends both to $GITHUB_OUTPUT when it is set.
# Needs a Docker daemon (DOCKER_HOST or the default socket) and a registry login where one is needed.
# Exit codes: 0 pushed; 1 build or push failed; 2 usage error.
set -euo pipefail
cd "$(dirname "$0")/../.."

die() {
  echo "build-image.sh: $*" >&2
  exit 2
}

revision="" repository="" offline=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --revision) revision="${2:-}"; shift 2 ;;
    --repository) repository="${2:-}"; shift 2 ;;
    --offline) offline=1; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ "$revision" =~ ^[0-9a-f]{10,40}$ ]] || die "--revision must be a commit id (10 to 40 hex digits)"
version="${revision:0:10}"

# The repository the program deploys from: one name for the build and both stacks.
program_repository() {
  local stack value first=""
  for stack in staging prod; do
    value="$(awk '/imageBuild:/ { inside = 1; next } inside && /repository:/ { print $2; exit }' "Pulumi.$stack.yaml")"
    [ -n "$value" ] || die "Pulumi.$stack.yaml has no settings.imageBuild.repository"
    [ -z "$first" ] || [ "$value" = "$first" ] ||
      die "Pulumi.staging.yaml and Pulumi.prod.yaml name different image repositories ($first, $value)"
    first="$value"
  done
  printf '%s\n' "$first"
}
if [ -z "$repository" ]; then repository="$(program_repository)"; fi
[[ "$repository" =~ ^[a-z0-9.:/_-]+$ ]] || die "not an image repository: '$repository'"

docker=/usr/bin/docker
[ -x "$docker" ] || docker="$(command -v docker)" || die "no docker client"
tag="$repository:$version"
labels=(--label "org.opencontainers.image.revision=$revision" --label "org.opencontainers.image.version=$version")
if [ "$offline" -eq 1 ]; then
  if [ -z "${DOCKER_HOST:-}" ]; then
    DOCKER_HOST="$(bash scripts/images.sh env | awk -F= '$1 == "DOCKER_HOST" { print substr($0, 13) }')"
    export DOCKER_HOST
  fi
  bash scripts/images.sh build python >&2 || exit 1  # cached: seconds when already built
  base="$(bash scripts/images.sh ref python)" || exit 1
  context="$(bash scripts/images.sh context)" || exit 1
  DOCKER_BUILDKIT=0 "$docker" build --force-rm --network none -f "$context/app/Dockerfile" \
    --build-arg "BASE=$base" --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src \
    --build-arg "IMMUNE_VERSION=$version" "${labels[@]}" -t "$tag" "$context" >&2 || exit 1
else
  "$docker" build -f app/Dockerfile --build-arg "IMMUNE_VERSION=$version" "${labels[@]}" -t "$tag" . >&2 || exit 1
fi
"$docker" push "$tag" >&2 || exit 1
reference="$("$docker" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$tag" |
  grep -F "$repository@" | head -n 1)"
digest="${reference#*@}"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "build-image.sh: no digest after the push of $tag" >&2; exit 1; }
printf 'digest=%s\nimage=%s@%s\n' "$digest" "$repository" "$digest"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  printf 'digest=%s\nimage=%s@%s\n' "$digest" "$repository" "$digest" >>"$GITHUB_OUTPUT"
fi
