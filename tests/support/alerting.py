"""What alert tests share: the webhook secret, sender lanes, and a watcher tick that waits for its deliveries."""

from __future__ import annotations

import pytest

from app.alerts import watcher
from app.alerts.lanes import Lanes
from app.cli import watcher_of

SECRET = "webhook-secret-0123456789"


@pytest.fixture
def senders():
    with Lanes() as lanes:
        yield lanes


def settled_tick(app, lanes) -> watcher.TickReport:
    """One watcher tick, then wait until every delivery it handed over is settled."""
    report = watcher.tick(watcher_of(app), lanes)
    assert lanes.wait_idle(timeout=30)
    return report
