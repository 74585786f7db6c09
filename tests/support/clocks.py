"""Clocks that only move when a test moves them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 25, 12, 0, tzinfo=UTC)


class FrozenClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class Ticker:
    """A monotonic clock (seconds) that only moves when a test moves ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
