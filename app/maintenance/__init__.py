"""Maintenance windows: planned work that sends no alerts and counts as planned downtime."""
