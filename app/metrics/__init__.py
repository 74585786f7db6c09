"""Prometheus fleet gauges (served at /metrics by app/http/metrics.py with the request metrics
of app/http/request_metrics.py)."""
