# shellcheck shell=bash
# Shared functions for the local service scripts (postgres.sh, redis.sh, kafka.sh, prometheus.sh).
#
# A service script sets SERVICE_NAME, defines svc_install, svc_start_locked, svc_env, svc_pid and
# optionally svc_stop_locked, then calls `svc_main "$@"`. Every state-changing command takes a
# per-service flock so that several test sessions starting the shared set at once do not race.

set -euo pipefail

IMMUNE_CACHE_DIR="${IMMUNE_CACHE_DIR:-$HOME/.cache/active-immune-core}"
IMMUNE_STATE_DIR="${IMMUNE_STATE_DIR:-$HOME/.local/state/active-immune-core}"
IMMUNE_SERVICE_START_TIMEOUT="${IMMUNE_SERVICE_START_TIMEOUT:-120}"
IMMUNE_SERVICE_STOP_TIMEOUT="${IMMUNE_SERVICE_STOP_TIMEOUT:-30}"
export IMMUNE_CACHE_DIR IMMUNE_STATE_DIR

log() { printf '[%s] %s\n' "${SERVICE_NAME:-services}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

service_state_dir() { printf '%s/%s' "$IMMUNE_STATE_DIR" "$SERVICE_NAME"; }

# Prints the content of a secret file, creating it (mode 0600) with a random hex value first if absent.
# Hex keeps the secret URL-safe, so it can be embedded in connection URLs without escaping.
ensure_secret() {
    local file="$1"
    if [[ ! -s "$file" ]]; then
        mkdir -p "$(dirname "$file")"
        (umask 077 && openssl rand -hex 24 >"$file.tmp" && mv "$file.tmp" "$file")
    fi
    chmod 0600 "$file"
    tr -d '\n' <"$file"
}

# Installs Debian packages that are missing; waits for a dpkg lock held by someone else.
ensure_debian_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing Debian packages: ${missing[*]}"
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >/dev/null; then
        apt-get -o DPkg::Lock::Timeout=600 -qq update >/dev/null
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >/dev/null
    fi
}

# A zombie (exited, not yet reaped by init) holds no ports or files any more, so it counts as dead.
pid_is_alive() {
    [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# Waits (up to the stop timeout) until PID no longer exists at all, zombie included. Needed after a
# crash: a server such as PostgreSQL refuses to start while its old pid still answers signal 0.
wait_until_reaped() {
    local pid="$1" waited=0
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    while kill -0 "$pid" 2>/dev/null && ((waited < IMMUNE_SERVICE_STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
}

# Prints the pid from a pid file if that process is alive and, when MARKER is given, its command line
# contains MARKER. The marker matters after a machine restart: the state dir survives, and the stale
# pid may by then belong to an unrelated process.
live_pid_from_file() {
    local file="$1" marker="${2:-}" pid cmdline
    [[ -s "$file" ]] || return 1
    pid="$(head -n1 "$file" | tr -d '[:space:]')"
    [[ "$pid" =~ ^[0-9]+$ ]] && pid_is_alive "$pid" || return 1
    if [[ -n "$marker" ]]; then
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
        [[ "$cmdline" == *"$marker"* ]] || return 1
    fi
    printf '%s\n' "$pid"
}

# Sends SIGNAL (TERM by default) to PID, waits up to the stop timeout, then falls back to SIGKILL.
terminate_pid() {
    local pid="$1" signal="${2:-TERM}" waited=0
    pid_is_alive "$pid" || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    while pid_is_alive "$pid" && ((waited < IMMUNE_SERVICE_STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if pid_is_alive "$pid"; then
        log "pid $pid ignored SIG$signal for ${IMMUNE_SERVICE_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while pid_is_alive "$pid"; do sleep 0.1; done
    fi
}

tcp_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Fails early with a clear message when another program already holds the port we want.
require_port_free() {
    local port="$1"
    if tcp_port_open 127.0.0.1 "$port"; then
        die "port $port on 127.0.0.1 is already in use by another process (set the port variable to move it)"
    fi
}

# Polls CHECK (a command) until it succeeds, the process PID dies, or the start timeout passes.
wait_until_ready() {
    local pid="$1" logfile="$2"; shift 2
    local deadline=$((SECONDS + IMMUNE_SERVICE_START_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ! pid_is_alive "$pid"; then
            log "process $pid exited during start-up; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "not ready after ${IMMUNE_SERVICE_START_TIMEOUT}s; stopping it. Last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            # A half-started server would make the next `start` believe it is running.
            terminate_pid "$pid" TERM
            return 1
        fi
        sleep 0.3
    done
}

# Starts a command detached from this shell (own session, no inherited descriptors) and records its pid.
spawn_daemon() {
    local pidfile="$1" logfile="$2"; shift 2
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
    rm -f "$pidfile"
    # The child records its own pid before exec, so the pid file is right even if setsid had to fork.
    # shellcheck disable=SC2016 # expanded by the child shell
    setsid bash -c 'echo "$$" >"$0" && exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
    local waited=0
    until [[ -s "$pidfile" ]] || ((waited > 50)); do sleep 0.1; waited=$((waited + 1)); done
}

# Runs a command holding the service's lock on descriptor 9. Daemons must be started with `9>&-`:
# a daemon that inherited the descriptor would hold the lock for its whole life.
with_service_lock() {
    local dir lock
    dir="$(service_state_dir)"
    mkdir -p "$dir"
    lock="$dir/.lock"
    (
        flock -w 600 9 || die "timed out waiting for $lock"
        "$@"
    ) 9>"$lock"
}

svc_running() { svc_pid >/dev/null 2>&1; }

svc_default_stop_locked() {
    local pid
    if pid="$(svc_pid 2>/dev/null)"; then
        log "stopping (pid $pid)"
        terminate_pid "$pid" TERM
    fi
}

svc_start_guarded() {
    if svc_running; then
        return 0
    fi
    svc_install
    svc_start_locked
}

svc_stop_guarded() {
    if declare -F svc_stop_locked >/dev/null; then
        svc_stop_locked
    else
        svc_default_stop_locked
    fi
}

svc_restart_guarded() {
    svc_stop_guarded
    svc_install
    svc_start_locked
}

svc_main() {
    local command="${1:-}"
    case "$command" in
        install) svc_install ;;
        start) with_service_lock svc_start_guarded ;;
        stop) with_service_lock svc_stop_guarded ;;
        restart) with_service_lock svc_restart_guarded ;;
        status)
            if svc_running; then
                echo "$SERVICE_NAME running (pid $(svc_pid))"
            else
                echo "$SERVICE_NAME stopped"
                exit 3
            fi
            ;;
        env) svc_env ;;
        pid) svc_pid || exit 3 ;;
        *)
            echo "usage: $(basename "$0") {install|start|stop|restart|status|env|pid}" >&2
            exit 2
            ;;
    esac
}
