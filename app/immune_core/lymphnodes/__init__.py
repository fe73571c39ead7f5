"""Lymph nodes: regional aggregation of threats and cytokines, coordinated by the leader."""
