"""Real-time delivery: the broker between nodes, the per-node hub, the WebSocket gateway."""
