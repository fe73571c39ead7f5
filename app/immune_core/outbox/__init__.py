"""The transactional outbox's relay: database rows to the bus, at least once."""
