#!/bin/sh
# `kafka-server` (the default command): a KRaft node configured like the public apache/kafka image's,
# single broker+controller unless KAFKA_* variables say otherwise. Every KAFKA_<NAME> variable sets a
# server property: NAME lower-cased, `___` -> `-`, `__` -> `_`, `_` -> `.` (KAFKA_LOG_RETENTION_HOURS ->
# log.retention.hours); the launcher's own variables (KAFKA_HEAP_OPTS, KAFKA_OPTS, ...) are not
# properties. CLUSTER_ID formats the storage on first start (a random one if unset). Any other command
# runs as given (the program's pods run their own scripts).
set -eu
if [ "${1:-}" != kafka-server ]; then
    exec "$@"
fi
run_dir="${KAFKA_RUN_DIR:-/var/run/kafka}"
conf="$run_dir/server.properties"
mkdir -p "$run_dir"
{
    echo "# Written by docker-entrypoint.sh from its defaults and the KAFKA_* environment."
    echo "node.id=1"
    echo "process.roles=broker,controller"
    echo "listeners=PLAINTEXT://:9092,CONTROLLER://:9093"
    echo "advertised.listeners=PLAINTEXT://localhost:9092"
    echo "controller.listener.names=CONTROLLER"
    echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    echo "controller.quorum.voters=1@localhost:9093"
    echo "log.dirs=/var/lib/kafka/data"
    echo "num.partitions=1"
    echo "offsets.topic.replication.factor=1"
    echo "transaction.state.log.replication.factor=1"
    echo "transaction.state.log.min.isr=1"
    echo "share.coordinator.state.topic.replication.factor=1"
    echo "share.coordinator.state.topic.min.isr=1"
    echo "group.initial.rebalance.delay.ms=0"
    env | LC_ALL=C sort | while IFS='=' read -r name value; do
        case "$name" in
            KAFKA_HEAP_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_GC_LOG_OPTS|KAFKA_JMX_OPTS|KAFKA_LOG4J_OPTS|\
            KAFKA_OPTS|KAFKA_HOME|KAFKA_RUN_DIR|KAFKA_DEBUG) continue ;;
            KAFKA_*) ;;
            *) continue ;;
        esac
        property="$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')"
        echo "$property=$value"
    done
} >"$conf.tmp"
# Later lines win in a properties file, but keep one line per key for whoever reads it.
awk -F= '!/^#/ { last[$1] = NR } { line[NR] = $0; key[NR] = $1 } END { for (i = 1; i <= NR; i++) if (line[i] ~ /^#/ || last[key[i]] == i) print line[i] }' \
    "$conf.tmp" >"$conf"
rm -f "$conf.tmp"
cluster_id="${CLUSTER_ID:-$(kafka-storage.sh random-uuid)}"
kafka-storage.sh format --ignore-formatted --cluster-id "$cluster_id" --config "$conf"
exec kafka-server-start.sh "$conf"
