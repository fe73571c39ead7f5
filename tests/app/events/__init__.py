"""Tests of immune_core.events."""
