"""The message bus (Kafka or in-process) behind one narrow interface."""
