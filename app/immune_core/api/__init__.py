"""The HTTP/WebSocket surface: app factory, security, middleware, errors."""
