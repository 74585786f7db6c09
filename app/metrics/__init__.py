"""Prometheus metrics at /metrics: the fleet (read from the database at scrape
time) and the service's own requests (shared across gunicorn workers)."""
