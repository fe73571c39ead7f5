#!/bin/sh
# Apache Kafka's `kafka-console-producer.sh`: org.apache.kafka.tools.ConsoleProducer.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.ConsoleProducer "$@"
