"""What alert tests share: the webhook secret receivers verify signatures with."""

from __future__ import annotations

SECRET = "webhook-secret-0123456789"
