"""The HTTP and WebSocket API: an app factory, routes, and the one mapping of errors to statuses."""
