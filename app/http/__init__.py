"""HTTP: blueprints, error handlers, and the per-request clock and connection."""
