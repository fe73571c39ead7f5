"""Response proposals: what the core suggests doing about a confirmed threat, and their validation."""
