"""Tests of immune_core.cells."""
