#!/usr/bin/env bash
# PostgreSQL 15 from the Debian packages, running a private cluster in the state directory.
# The server refuses to run as root, so it runs as the `postgres` OS user; the Debian default
# cluster on port 5432 is neither used nor needed.
# Usage: postgres.sh {install|start|stop|restart|status|env|pid}
SERVICE_NAME=postgres
# shellcheck source=scripts/services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_MAJOR="${IMMUNE_PG_MAJOR:-15}"
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_PORT="${IMMUNE_PG_PORT:-15432}"
PG_OS_USER=postgres
STATE="$(service_state_dir)"
DATA="$STATE/data"
SOCKET_DIR="$STATE/run"
LOGFILE="$STATE/logs/postgres.log"
PASSWORD_FILE="$STATE/immune.password"

svc_install() {
    [[ -x "$PG_BIN/postgres" ]] || ensure_debian_packages "postgresql-$PG_MAJOR"
    [[ -x "$PG_BIN/postgres" ]] || die "$PG_BIN/postgres not found after installing postgresql-$PG_MAJOR"
}

as_pg() { runuser -u "$PG_OS_USER" -- "$@"; }

# The postgres user must be able to reach the data directory. When the state dir lives under a
# private home (e.g. /root), grant search permission (not read) on the parent directories only.
grant_traversal_to_pg_user() {
    local dir="$STATE"
    while [[ "$dir" != "/" ]]; do
        dir="$(dirname "$dir")"
        if ! as_pg test -x "$dir"; then
            chmod o+x "$dir"
        fi
    done
}

init_cluster_once() {
    [[ -f "$DATA/PG_VERSION" ]] && return 0
    log "initialising a cluster in $DATA"
    mkdir -p "$DATA"
    chown "$PG_OS_USER:" "$DATA"
    chmod 0700 "$DATA"
    # Local socket connections authenticate by OS user (only `postgres` may use the superuser);
    # TCP connections require the generated SCRAM password.
    as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >"$STATE/logs/initdb.log" 2>&1 ||
        { tail -n 20 "$STATE/logs/initdb.log" >&2; die "initdb failed"; }
    echo "include_if_exists = 'immune.conf'" >>"$DATA/postgresql.conf"
}

write_config() {
    # Regenerated on each start so that a changed port or socket directory takes effect.
    cat >"$DATA/immune.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$SOCKET_DIR'
unix_socket_permissions = 0700
max_connections = 200
shared_buffers = 128MB
password_encryption = 'scram-sha-256'
logging_collector = off
log_min_messages = warning
EOF
    chown "$PG_OS_USER:" "$DATA/immune.conf"
}

psql_superuser() {
    as_pg "$PG_BIN/psql" -h "$SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt
}

ensure_app_role() {
    local password
    password="$(ensure_secret "$PASSWORD_FILE")"
    # The password goes through stdin, never through the command line (ps) or the server log.
    psql_superuser >/dev/null <<SQL
SET log_statement = 'none';
SELECT 'CREATE ROLE immune LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'immune')\gexec
ALTER ROLE immune WITH LOGIN PASSWORD '$password';
SELECT 'CREATE DATABASE immune OWNER immune' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'immune')\gexec
SQL
}

svc_start_locked() {
    require_port_free "$PG_PORT"
    mkdir -p "$STATE/logs" "$SOCKET_DIR"
    grant_traversal_to_pg_user
    chown "$PG_OS_USER:" "$SOCKET_DIR" "$STATE/logs"
    chmod 0700 "$SOCKET_DIR"
    init_cluster_once
    write_config
    if [[ -s "$DATA/postmaster.pid" ]]; then
        local old cmdline
        old="$(head -n1 "$DATA/postmaster.pid" | tr -d '[:space:]')"
        cmdline="$(tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null || true)"
        # Only a postmaster going away is waited for (a crashed one is a zombie until reaped, an exiting
        # one has no command line left): a live pid that is some other program's never goes away, and
        # waiting the stop timeout out for it would only delay the start.
        if [[ -z "$cmdline" || "$cmdline" == *"$PG_BIN/postgres -D $DATA"* ]]; then
            wait_until_reaped "$old"
        fi
        # Still there, yet not our postmaster (svc_pid failed before we got here): a pid reused after
        # a machine restart. PostgreSQL would refuse to start on it, so drop the stale lock file.
        svc_pid >/dev/null || rm -f "$DATA/postmaster.pid"
    fi
    log "starting on 127.0.0.1:$PG_PORT"
    as_pg setsid -w "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t "$IMMUNE_SERVICE_START_TIMEOUT" start >/dev/null 9>&- ||
        { tail -n 30 "$LOGFILE" >&2; die "postgres did not start"; }
    ensure_app_role
}

svc_stop_locked() {
    local pid
    pid="$(svc_pid 2>/dev/null)" || return 0
    log "stopping (pid $pid)"
    # Fast shutdown: SIGTERM would be "smart" mode and wait for every client to disconnect.
    terminate_pid "$pid" INT
}

svc_pid() { live_pid_from_file "$DATA/postmaster.pid" "$PG_BIN/postgres -D $DATA"; }

svc_env() {
    local password
    password="$(ensure_secret "$PASSWORD_FILE")"
    echo "IMMUNE_DATABASE_URL=postgresql://immune:$password@127.0.0.1:$PG_PORT/immune"
}

svc_main "$@"
