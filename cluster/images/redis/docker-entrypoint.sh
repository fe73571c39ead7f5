#!/bin/sh
# `docker run image -–flag` or `docker run image /path/redis.conf` runs redis-server with them (as the
# public image does); anything else runs as given. exec: redis-server is PID 1 and handles SIGTERM.
set -eu
case "${1:-}" in
    -*|*.conf) set -- redis-server "$@" ;;
esac
exec "$@"
