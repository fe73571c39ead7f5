#!/bin/sh
# Apache Kafka's `kafka-server-start.sh CONFIG`: the broker (and/or controller) in this process.
set -eu
kafka_home="${KAFKA_HOME:-/opt/kafka}"
[ $# -ge 1 ] || { echo "usage: kafka-server-start.sh server.properties [--override property=value]..." >&2; exit 1; }
: "${KAFKA_HEAP_OPTS:=-Xmx1G -Xms1G}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$kafka_home/config/log4j2.properties}"
export KAFKA_HEAP_OPTS KAFKA_LOG4J_OPTS
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
