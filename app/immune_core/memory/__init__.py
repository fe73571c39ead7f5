"""Immunological memory: the threat signatures seen before, and live intel known to this replica."""
