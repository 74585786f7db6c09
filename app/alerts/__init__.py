"""Alerts: history events turned into signed webhooks, delivered from an outbox."""
