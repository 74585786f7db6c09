"""How a delivery is sent: a signed webhook POST, or a message through an Apprise channel.

The outbox row's ``url`` is either a webhook URL or a channel's target; a
channel's secret URL is looked up in the settings only here, at send time.
"""

from __future__ import annotations

from typing import Any

from app.alerts import channels, webhooks
from app.alerts.webhooks import Outcome
from config import Settings


def send(target: str, payload: dict[str, Any], settings: Settings) -> Outcome:
    """Deliver ``payload`` to ``target``; never raises."""
    timeout = settings.alert_timeout_seconds
    if not channels.is_target(target):
        return webhooks.post(target, payload, secret=settings.alert_webhook_secret, timeout=timeout)
    channel = channels.find(settings.alert_channels, target)
    if channel is None:
        # Its URL (and secret) went with the setting: nothing left to send it to.
        return Outcome(False, False, "channel no longer in ALERT_CHANNELS")
    return channels.notify(channel, payload, timeout=timeout)
