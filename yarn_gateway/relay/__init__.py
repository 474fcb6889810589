"""The websocket relay: the gateway's hot path between desktop clients and kernels."""
