"""Getting events in: HTTP intake, Kafka consumption, and the durable writes both share."""
