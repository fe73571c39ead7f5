"""Stored threats: query API."""
