"""The service's one clock.

Staleness is decided by the service's own time, never the daemons', so every
rule takes ``now`` from a Clock. Tests inject a clock they move by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
