"""Uptime from the event history: /api/daemon/uptime and /api/daemon/<id>/uptime."""
