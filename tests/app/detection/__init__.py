"""Tests of immune_core.detection."""
