"""The daemon registry: /api/daemon/*."""
