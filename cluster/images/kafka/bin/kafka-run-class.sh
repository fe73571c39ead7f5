#!/bin/sh
# Runs a Kafka main class on the image's classpath, with the variables Apache's kafka-run-class.sh reads:
# KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS, KAFKA_LOG4J_OPTS,
# KAFKA_OPTS, LOG_DIR. Usage: kafka-run-class.sh CLASS [ARGS...]
set -eu
kafka_home="${KAFKA_HOME:-/opt/kafka}"
log_dir="${LOG_DIR:-/tmp/kafka-logs}"
mkdir -p "$log_dir" 2>/dev/null || true
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$kafka_home/config/tools-log4j2.properties}"
# exec: the JVM is the process the runtime signals (SIGTERM runs Kafka's orderly shutdown).
# shellcheck disable=SC2086 # the *_OPTS variables are option lists, split on purpose
exec java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-} \
    $KAFKA_LOG4J_OPTS "-Dkafka.logs.dir=$log_dir" -cp "$kafka_home/libs/*" ${KAFKA_OPTS:-} "$@"
