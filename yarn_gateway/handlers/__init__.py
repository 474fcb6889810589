"""REST and websocket handlers."""
