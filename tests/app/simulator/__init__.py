"""Tests of immune_core.simulator."""
