"""Hormones: global state (the threat level) broadcast to every replica (Redis pub/sub or in-process)."""
