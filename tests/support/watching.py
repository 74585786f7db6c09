"""A watcher driven by the test: ticks that wait for their deliveries, time moved by the clock."""

from __future__ import annotations

from flask import Flask

from app.alerts import watcher
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from tests.support.clocks import FrozenClock


def settled_tick(app: Flask, lanes: Lanes) -> watcher.TickReport:
    """One watcher tick, then wait until every delivery it handed over is settled."""
    report = watcher.tick(watcher_of(app), lanes)
    assert lanes.wait_idle(timeout=30)
    return report


def watch_for(seconds: float, app: Flask, clock: FrozenClock, lanes: Lanes) -> list[str]:
    """Let time pass with a watcher running, ticking every 10 s; returns the daemons it saw go stale."""
    stale: list[str] = []
    while seconds > 0:
        step = min(10.0, seconds)
        clock.advance(step)
        seconds -= step
        stale += settled_tick(app, lanes).stale
    return stale
