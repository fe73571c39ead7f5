#!/usr/bin/env bash
# The images this project builds itself, and the Docker daemon + local registry that build and serve them.
#
# Usage: images.sh {up|down|status|env|build [name...]|push|context|list|ref NAME|prune}
#   up      installs Debian's docker.io / docker-registry / debootstrap if absent, starts a private dockerd
#           (own data root, exec root and socket; --bridge=none, no iptables, no masquerade: containers get
#           a loopback interface only) and a registry on 127.0.0.1:$IMAGES_REGISTRY_PORT. Idempotent.
#   down    stops both by their recorded pids and unmounts anything left under their roots.
#   status  exit 0 when both answer, 3 otherwise.
#   env     DOCKER_HOST and the registry address, KEY=value.
#   build   builds the named images (default: all, in dependency order); docs/engine.md "Cluster images".
#   push    pushes every built image, prints name@digest, writes $IMAGES_STATE/images.json.
#   context assembles the app build context (sources + hash-checked wheels) and prints its path.
#   ref     the reference (registry/name:tag) a built image was tagged with, e.g. `ref python`.
#   list    the image names, in build order.   prune   removes untagged (superseded) layers.
#
# Pins come from cluster/versions.env; any of them can be overridden from the environment.
SERVICE_NAME=images
# shellcheck source=scripts/services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/services/lib.sh"

shopt -s inherit_errexit  # a failure inside $(...) fails the caller too

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECIPES="$REPO_ROOT/cluster/images"

# versions.env supplies defaults only: a variable already set in the environment wins.
load_versions() {
    local line key
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        key="${line%%=*}"
        [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || die "bad line in cluster/versions.env: $line"
        [[ -n "${!key+set}" ]] || export "$key=${line#*=}"
    done <"$REPO_ROOT/cluster/versions.env"
}
load_versions

DOCKER=/usr/bin/docker  # Debian's client, same API version as its daemon (/usr/local/bin/docker is another)
DOCKERD=/usr/sbin/dockerd
REGISTRY_BIN=/usr/bin/docker-registry
SOCKET="$IMAGES_DOCKER_SOCKET"
export DOCKER_HOST="unix://$SOCKET"
export DOCKER_BUILDKIT=0  # the classic builder: BuildKit needs the buildx component, not packaged here
REGISTRY="127.0.0.1:$IMAGES_REGISTRY_PORT"
DOCKER_DATA="$IMMUNE_STATE_DIR/docker"
# Short: unix socket paths (containerd's among them) must stay under 108 bytes.
EXEC_ROOT="/run/immune-docker-$(printf '%s' "$IMMUNE_STATE_DIR" | sha256sum | cut -c1-8)"
IMAGES_STATE="$IMMUNE_STATE_DIR/images"
REGISTRY_DATA="$IMMUNE_STATE_DIR/registry"
DOCKERD_PIDFILE="$IMAGES_STATE/dockerd.pid"
REGISTRY_PIDFILE="$IMAGES_STATE/registry.pid"
BUILT_DIR="$IMAGES_STATE/built"
IMAGES_JSON="$IMAGES_STATE/images.json"
ALL_IMAGES=(python app kafka redis postgres prometheus postgres-exporter redis-exporter kafka-exporter)

# ---------------------------------------------------------------------------------------------- daemons

ensure_host_packages() {
    local missing=() pkg
    for pkg in docker.io docker-registry debootstrap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing Debian packages: ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 -qq update >/dev/null
    # policy-rc.d keeps the packages' own init scripts from starting a system dockerd/registry.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=600 -y -qq \
        --no-install-recommends install "${missing[@]}" >/dev/null
}

dockerd_pid() { live_pid_from_file "$DOCKERD_PIDFILE" "$EXEC_ROOT"; }
registry_pid() { live_pid_from_file "$REGISTRY_PIDFILE" "$IMAGES_STATE/registry.yml"; }

dockerd_answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
registry_answers() { curl -fsS --max-time 3 "http://$REGISTRY/v2/" >/dev/null 2>&1; }

start_dockerd() {
    if dockerd_pid >/dev/null; then return 0; fi
    [[ -S "$SOCKET" ]] && dockerd_answers && die "$SOCKET is served by a daemon this script did not start"
    mkdir -p "$DOCKER_DATA" "$IMAGES_STATE" "$EXEC_ROOT"
    # Our own (empty) daemon.json: /etc/docker/daemon.json belongs to whoever else runs Docker here.
    echo '{}' >"$IMAGES_STATE/daemon.json"
    rm -f "$SOCKET"
    log "starting dockerd (data root $DOCKER_DATA, socket $SOCKET)"
    spawn_daemon "$DOCKERD_PIDFILE" "$IMAGES_STATE/dockerd.log" "$DOCKERD" \
        --config-file "$IMAGES_STATE/daemon.json" \
        --data-root "$DOCKER_DATA" --exec-root "$EXEC_ROOT" --pidfile "$EXEC_ROOT/dockerd.pid" \
        -H "unix://$SOCKET" --storage-driver overlay2 \
        --bridge=none --iptables=false --ip-masq=false --ip-forward=false --userland-proxy=false \
        --insecure-registry "$REGISTRY" --log-level warn
    wait_until_ready "$(cat "$DOCKERD_PIDFILE")" "$IMAGES_STATE/dockerd.log" dockerd_answers
}

write_registry_config() {
    mkdir -p "$REGISTRY_DATA"
    cat >"$IMAGES_STATE/registry.yml" <<EOF
# Generated by scripts/images.sh on every start: distribution 2.8 on loopback only.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_DATA
  delete:
    enabled: true
http:
  addr: $REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

start_registry() {
    if registry_pid >/dev/null; then return 0; fi
    require_port_free "$IMAGES_REGISTRY_PORT"
    write_registry_config
    log "starting the registry on $REGISTRY (storage $REGISTRY_DATA)"
    spawn_daemon "$REGISTRY_PIDFILE" "$IMAGES_STATE/registry.log" "$REGISTRY_BIN" serve "$IMAGES_STATE/registry.yml"
    wait_until_ready "$(cat "$REGISTRY_PIDFILE")" "$IMAGES_STATE/registry.log" registry_answers
}

# Mounts dockerd or its containerd may leave after an unclean end (overlay layers, shm, netns files),
# and the data root itself: dockerd bind-mounts it onto itself to make it a private mount, and that
# bind stays after dockerd exits (seen: /dev/vda on .../docker after `down`).
leftover_mounts() {
    findmnt -rn -o TARGET | awk -v a="$DOCKER_DATA/" -v b="$EXEC_ROOT/" -v c="$EXEC_ROOT" -v d="$DOCKER_DATA" \
        'index($0, a) == 1 || index($0, b) == 1 || $0 == c || $0 == d' | sort -r
}

stop_all() {
    local pid target
    if pid="$(registry_pid)"; then
        log "stopping the registry (pid $pid)"
        terminate_pid "$pid" TERM
    fi
    if pid="$(dockerd_pid)"; then
        log "stopping dockerd (pid $pid)"
        terminate_pid "$pid" TERM
    fi
    while IFS= read -r target; do
        [[ -n "$target" ]] || continue
        log "unmounting leftover $target"
        umount "$target" 2>/dev/null || umount -l "$target"
    done < <(leftover_mounts)
    rm -f "$SOCKET" "$DOCKERD_PIDFILE" "$REGISTRY_PIDFILE"
    rm -rf "$EXEC_ROOT"
}

status() {
    local rc=0 pid
    if pid="$(dockerd_pid)" && dockerd_answers; then
        echo "dockerd running (pid $pid, $DOCKER_HOST, data root $DOCKER_DATA)"
    else
        echo "dockerd stopped ($DOCKER_HOST)"
        rc=3
    fi
    if pid="$(registry_pid)" && registry_answers; then
        echo "registry running (pid $pid, http://$REGISTRY)"
    else
        echo "registry stopped (http://$REGISTRY)"
        rc=3
    fi
    return "$rc"
}

require_up() { status >/dev/null || die "the daemon or the registry is not running: run scripts/images.sh up"; }

# ------------------------------------------------------------------------------------------------ build

# The apt source this machine is configured with: the one deb822 entry for the suite itself.
debian_mirror() {
    local uri
    uri="$(awk -v suite="$DEBIAN_SUITE" '
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = uris }
        END { print found }' /etc/apt/sources.list.d/*.sources 2>/dev/null)"
    if [[ -z "$uri" ]]; then
        uri="$(awk -v suite="$DEBIAN_SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' \
            /etc/apt/sources.list 2>/dev/null)"
    fi
    [[ -n "$uri" ]] || die "no apt source for $DEBIAN_SUITE in /etc/apt/sources.list{,.d}"
    printf '%s\n' "$uri"
}

# The suite's sources as apt inside the images sees them (main suite, -updates, -security).
debian_sources() {
    local mirror="$1" security
    security="${mirror%/debian}/debian-security"
    cat <<EOF
Types: deb
URIs: $mirror
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Docker tags allow [A-Za-z0-9_.-] only; Debian versions carry '+', '~' and ':'.
tag_of() { printf '%s' "$1" | tr '+~:' '---'; }

image_present() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# debootstrap --variant=minbase, security updates applied, apt lists dropped: the one root layer every
# image here shares. Cached as a tarball by suite, mirror and recipe (outside the repo).
build_debian_base() {
    local mirror key cache rootfs tarball ref
    mirror="$(debian_mirror)"
    key="$(cat "$RECIPES/debian/build-rootfs.sh" <(debian_sources "$mirror") <(dpkg-query -W -f='${Version}' debootstrap) |
        sha256sum | cut -c1-12)"
    ref="immune/debian:$DEBIAN_SUITE-$key"
    if image_present "$ref"; then
        DEBIAN_BASE="$ref"
        return 0
    fi
    cache="$IMMUNE_CACHE_DIR/images-debian-$DEBIAN_SUITE-$key"
    tarball="$cache/rootfs.tar"
    if [[ ! -s "$tarball" ]]; then
        mkdir -p "$cache" "$IMMUNE_CACHE_DIR/debootstrap-$DEBIAN_SUITE-debs"
        rootfs="$cache/rootfs.partial"
        rm -rf "$rootfs"
        log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror"
        local started=$SECONDS
        debian_sources "$mirror" >"$cache/debian.sources"
        bash "$RECIPES/debian/build-rootfs.sh" "$DEBIAN_SUITE" "$mirror" "$rootfs" \
            "$IMMUNE_CACHE_DIR/debootstrap-$DEBIAN_SUITE-debs" "$cache/debian.sources" "$tarball.partial" \
            >"$cache/build.log" 2>&1 || { tail -n 30 "$cache/build.log" >&2; die "debootstrap of $DEBIAN_SUITE failed"; }
        mv "$tarball.partial" "$tarball"
        rm -rf "$rootfs"
        log "root filesystem built in $((SECONDS - started)) s: $tarball"
    fi
    "$DOCKER" import --message "debootstrap --variant=minbase $DEBIAN_SUITE ($mirror)" "$tarball" "$ref" >/dev/null
    DEBIAN_BASE="$ref"
}

# The classic builder's cache key of a COPY includes the files' mtimes: a fresh checkout, or a copy made
# for the build, would rebuild every layer from there on and give a new digest for the same bytes (and a
# second `pulumi up` would roll pods for nothing). So every context is staged under the cache with one
# fixed mtime (2000-01-01: a wheel is a zip, which cannot store times before 1980).
CONTEXT_MTIME=@946684800
stage_context() {
    local source="$1" staged="$2"
    if [[ "$source" != "$staged" ]]; then
        rm -rf "$staged"
        mkdir -p "$staged"
        cp -a "$source/." "$staged/"
    fi
    find "$staged" -exec touch -h -d "$CONTEXT_MTIME" {} +
}

# Builds cluster/images/NAME/Dockerfile FROM the Debian base; the image records its upstream version in
# /etc/immune-image-version, which becomes its tag. Build steps reach the apt source (host network, the
# only one this daemon has); the resulting containers run without any network unless told otherwise.
build_recipe() {
    local name="$1" context="$2"; shift 2
    local tmp_ref="immune/$name:building" version started=$SECONDS staged="$IMMUNE_CACHE_DIR/images-context-$name"
    log "building $name"
    stage_context "$context" "$staged"
    "$DOCKER" build --force-rm --network "${BUILD_NETWORK:-host}" --pull=false -f "$staged/Dockerfile" \
        --build-arg "DEBIAN_BASE=$DEBIAN_BASE" "$@" -t "$tmp_ref" "$staged" >"$IMAGES_STATE/build-$name.log" 2>&1 ||
        { tail -n 30 "$IMAGES_STATE/build-$name.log" >&2; die "building $name failed (log: $IMAGES_STATE/build-$name.log)"; }
    version="$("$DOCKER" run --rm --network none --entrypoint /bin/cat "$tmp_ref" /etc/immune-image-version)"
    record_built "$name" "$tmp_ref" "$version" "$((SECONDS - started))"
}

record_built() {
    local name="$1" tmp_ref="$2" version="$3" seconds="$4" ref
    ref="$REGISTRY/immune/$name:$(tag_of "$version")"
    "$DOCKER" tag "$tmp_ref" "$ref"
    "$DOCKER" rmi "$tmp_ref" >/dev/null
    mkdir -p "$BUILT_DIR"
    printf '%s\n%s\n' "$ref" "$version" >"$BUILT_DIR/$name"
    log "built $ref in $seconds s ($("$DOCKER" image inspect --format '{{.Size}}' "$ref") bytes)"
}

built_ref() { [[ -s "$BUILT_DIR/$1" ]] && head -n1 "$BUILT_DIR/$1"; }

build_python() { build_recipe python "$RECIPES/python"; }
build_redis() { build_recipe redis "$RECIPES/redis"; }
build_postgres() { build_recipe postgres "$RECIPES/postgres" --build-arg "PG_MAJOR=$IMAGES_POSTGRES_MAJOR"; }
build_prometheus() { build_recipe prometheus "$RECIPES/prometheus"; }
build_postgres_exporter() { build_recipe postgres-exporter "$RECIPES/postgres-exporter"; }
build_redis_exporter() { build_recipe redis-exporter "$RECIPES/redis-exporter"; }

# Kafka's jars come the way the local service gets them (scripts/services/kafka.sh: Maven Central,
# cached by version); the context is the recipe plus those jars, hard-linked (same file system).
build_kafka() {
    local kafka_home="$IMMUNE_CACHE_DIR/kafka-$IMAGES_KAFKA_VERSION" context="$IMMUNE_CACHE_DIR/images-context-kafka"
    IMMUNE_KAFKA_VERSION="$IMAGES_KAFKA_VERSION" bash "$REPO_ROOT/scripts/services/kafka.sh" install ||
        die "could not resolve Kafka $IMAGES_KAFKA_VERSION's jars"
    rm -rf "$context"
    mkdir -p "$context"
    cp -a "$RECIPES/kafka/." "$context/"
    cp -al "$kafka_home/libs" "$context/libs" 2>/dev/null || cp -a "$kafka_home/libs" "$context/libs"
    build_recipe kafka "$context" --build-arg "KAFKA_VERSION=$IMAGES_KAFKA_VERSION"
}

# The wheels requirements.lock pins, downloaded on this host (same Debian release, CPython 3.11, x86_64
# as the base) and checked against the lock's hashes; the build then installs them with --no-index.
app_wheels() {
    local key dir
    key="$(sha256sum "$REPO_ROOT/requirements.lock" | cut -c1-12)"
    dir="$IMMUNE_CACHE_DIR/images-wheels-$key"
    if [[ ! -f "$dir/.complete" ]]; then
        # glibc 2.36 (bookworm) runs every manylinux wheel up to 2_36; pip 23 does not expand the tag itself.
        local platforms=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
        local minor
        for minor in $(seq 5 36); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
        rm -rf "$dir.partial"
        mkdir -p "$dir.partial"
        log "downloading the locked wheels into $dir"
        python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
            --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
            -r "$REPO_ROOT/requirements.lock" -d "$dir.partial" >&2 || die "pip download of requirements.lock failed"
        touch "$dir.partial/.complete"
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
    fi
    printf '%s\n' "$dir"
}

# What app/Dockerfile COPYs and nothing else (the repository root holds .venv and caches), plus the
# wheels. Printed path: a build context for `docker build -f app/Dockerfile`.
app_context() {
    local context="$IMMUNE_CACHE_DIR/images-app-context" wheels
    wheels="$(app_wheels)"
    rm -rf "$context"
    mkdir -p "$context/app" "$context/wheels"
    cp "$REPO_ROOT/requirements.lock" "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/README.md" "$context/"
    cp "$REPO_ROOT/app/Dockerfile" "$context/app/Dockerfile"
    # Plain copies (not links): the build must see the files, whatever the checkout's file system.
    cp -a "$REPO_ROOT/app/immune_core" "$context/app/immune_core"
    find "$context/app" -name __pycache__ -prune -exec rm -rf {} +
    cp -a "$wheels"/*.whl "$context/wheels/"
    stage_context "$context" "$context"
    printf '%s\n' "$context"
}

build_app() {
    local python context version started=$SECONDS
    python="$(built_ref python)" || die "build the python base first (images.sh build python)"
    context="$(app_context)"
    version="$(awk -F' *= *' '$1 == "version" { gsub(/"/, "", $2); print $2; exit }' "$REPO_ROOT/pyproject.toml")"
    log "building app ($version) on $python"
    "$DOCKER" build --force-rm --network none -f "$context/app/Dockerfile" \
        --build-arg "BASE=$python" --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src \
        -t immune/app:building "$context" >"$IMAGES_STATE/build-app.log" 2>&1 ||
        { tail -n 30 "$IMAGES_STATE/build-app.log" >&2; die "building app failed (log: $IMAGES_STATE/build-app.log)"; }
    [[ "$IMAGES_APP_TAG" == "$version" ]] || log "note: pyproject version $version, tag pin $IMAGES_APP_TAG"
    "$DOCKER" tag immune/app:building "$REGISTRY/immune/immune-core:$IMAGES_APP_TAG"
    "$DOCKER" rmi immune/app:building >/dev/null
    mkdir -p "$BUILT_DIR"
    printf '%s\n%s\n' "$REGISTRY/immune/immune-core:$IMAGES_APP_TAG" "$version" >"$BUILT_DIR/app"
    log "built $REGISTRY/immune/immune-core:$IMAGES_APP_TAG in $((SECONDS - started)) s"
}

# requirements.lock entries (with their hashes) for the named packages only.
lock_subset() {
    awk -v names=" $* " '
        /^[A-Za-z0-9]/ { name = tolower($0); sub(/==.*/, "", name); keep = index(names, " " name " ") > 0 }
        keep && !/^ *#/' "$REPO_ROOT/requirements.lock"
}

# The exporter runs on the Python base with the app lock's own pins of its five packages.
build_kafka_exporter() {
    local python context wheels packages=(aiokafka async-timeout packaging typing-extensions prometheus-client)
    local package wheel key
    python="$(built_ref python)" || die "build the python base first (images.sh build python)"
    wheels="$(app_wheels)"
    context="$IMMUNE_CACHE_DIR/images-context-kafka-exporter"
    rm -rf "$context"
    mkdir -p "$context/wheels"
    cp "$RECIPES/kafka-exporter/Dockerfile" "$RECIPES/kafka-exporter/kafka_exporter.py" "$context/"
    lock_subset "${packages[@]}" >"$context/wheels/requirements.lock"
    for package in "${packages[@]}"; do
        wheel="$(find "$wheels" -maxdepth 1 -iname "$(printf '%s' "$package" | tr '-' '_')-*.whl" | head -n1)"
        [[ -n "$wheel" ]] || die "no wheel for $package in $wheels"
        cp "$wheel" "$context/wheels/"
    done
    # The tag says which upstream interface it reproduces, and which revision of ours does it.
    key="$(cat "$context/kafka_exporter.py" "$context/wheels/requirements.lock" | sha256sum | cut -c1-8)"
    BUILD_NETWORK=none build_recipe kafka-exporter "$context" --build-arg "PYTHON_BASE=$python" \
        --build-arg "EXPORTER_VERSION=${IMAGES_KAFKA_EXPORTER_VERSION#v}-compat-$key"
}

build_one() {
    local name="$1"
    case "$name" in
        python) build_python ;;
        app) build_app ;;
        *)
            declare -F "build_${name//-/_}" >/dev/null || die "unknown image $name (known: ${ALL_IMAGES[*]})"
            "build_${name//-/_}"
            ;;
    esac
}

build() {
    require_up
    local names=("$@") name
    ((${#names[@]})) || names=("${ALL_IMAGES[@]}")
    mkdir -p "$IMAGES_STATE"
    build_debian_base
    for name in "${names[@]}"; do
        build_one "$name"
    done
}

# Layers of earlier builds that no tag names any more. Not done by `build` itself: a classic build that
# someone else runs on this daemon at the same time has untagged intermediate images too.
prune() {
    require_up
    "$DOCKER" image prune --force
}

# ------------------------------------------------------------------------------------------------- push

push() {
    require_up
    local name ref version digest entries=()
    for name in "${ALL_IMAGES[@]}"; do
        ref="$(built_ref "$name")" || continue
        version="$(sed -n 2p "$BUILT_DIR/$name")"
        "$DOCKER" push "$ref" >"$IMAGES_STATE/push-$name.log" 2>&1 ||
            { tail -n 20 "$IMAGES_STATE/push-$name.log" >&2; die "pushing $ref failed"; }
        digest="$("$DOCKER" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" |
            grep -m1 "^${ref%:*}@")" || die "no registry digest for $ref after push"
        echo "$name $digest"
        entries+=("$name" "$ref" "$digest" "$version")
    done
    ((${#entries[@]})) || die "nothing built yet (images.sh build)"
    python3 - "$IMAGES_JSON" "$REGISTRY" "${entries[@]}" <<'EOF'
import json, os, sys
path, registry, *flat = sys.argv[1:]
images = {}
for i in range(0, len(flat), 4):
    name, ref, digest_ref, version = flat[i : i + 4]
    images[name] = {"tag": ref, "ref": digest_ref, "digest": digest_ref.rsplit("@", 1)[1], "version": version}
tmp = path + ".tmp"
with open(tmp, "w", encoding="utf-8") as out:
    json.dump({"registry": registry, "images": images}, out, indent=2, sort_keys=True)
    out.write("\n")
os.replace(tmp, path)
EOF
    log "wrote $IMAGES_JSON"
}

# ------------------------------------------------------------------------------------------------- main

with_images_lock() {
    mkdir -p "$IMAGES_STATE"
    (
        flock -w 1800 9 || die "timed out waiting for $IMAGES_STATE/.lock"
        "$@"
    ) 9>"$IMAGES_STATE/.lock"
}

up() {
    ensure_host_packages
    start_dockerd
    start_registry
    status
}

main() {
    local command="${1:-}"
    shift || true
    case "$command" in
        up) with_images_lock up ;;
        down) with_images_lock stop_all ;;
        status) status || exit 3 ;;
        env) printf 'DOCKER_HOST=%s\nIMAGES_REGISTRY=%s\nIMAGES_JSON=%s\n' "$DOCKER_HOST" "$REGISTRY" "$IMAGES_JSON" ;;
        build) with_images_lock build "$@" ;;
        push) with_images_lock push ;;
        prune) with_images_lock prune ;;
        context) with_images_lock app_context ;;
        list) printf '%s\n' "${ALL_IMAGES[@]}" ;;
        ref) built_ref "${1:-}" || die "image '${1:-}' is not built (images.sh build ${1:-<name>})" ;;
        *)
            echo "usage: $(basename "$0") {up|down|status|env|build [name...]|push|context|list|ref NAME|prune}" >&2
            exit 2
            ;;
    esac
}

main "$@"
