"""Live push of threats and alerts to WebSocket subscribers."""
