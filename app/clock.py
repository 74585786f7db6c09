"""The service's one clock.

Staleness is decided by the service's own time, never the daemons', so every
rule takes ``now`` from here. Tests inject a clock they move by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from flask import Flask, current_app


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


CLOCK_KEY = "daemon_health_clock"


def install(app: Flask, clock: Clock | None) -> None:
    app.extensions[CLOCK_KEY] = clock or SystemClock()


def now() -> datetime:
    """The current app's clock, read once per request by the routes."""
    clock: Clock = current_app.extensions[CLOCK_KEY]
    return clock.now()
