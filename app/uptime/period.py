"""The period an uptime question is about, from ?window= or ?from=&to=."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.registry.schemas import TIMESTAMP_RULE, InvalidInput, parse_timestamp

_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
MAX_PERIOD = timedelta(days=400)
DEFAULT_WINDOW = "24h"
WINDOW_RULE = "must be a number and a unit m, h or d (e.g. 1h, 24h, 7d, 30d), at most 400d"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    now: datetime

    @property
    def observed_end(self) -> datetime:
        """The end of what can be known: nothing has happened after now."""
        return min(self.end, self.now)


def _invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"Invalid query parameter {param}: {message}", {param: message})


def _timestamp(args: Mapping[str, str], param: str) -> datetime | None:
    if param not in args:
        return None
    try:
        return parse_timestamp(args[param])
    except ValueError:
        raise _invalid(param, TIMESTAMP_RULE) from None


def parse_period(args: Mapping[str, str], *, now: datetime) -> Period:
    """Read ``window`` (default 24h, ending at ``to`` or now) or ``from``/``to``."""
    if "window" in args and "from" in args:
        raise _invalid("window", "give either window or from, not both")
    end = _timestamp(args, "to") or now
    start = _timestamp(args, "from")
    if start is None:
        match = _WINDOW.match(args.get("window", DEFAULT_WINDOW))
        if not match:
            raise _invalid("window", WINDOW_RULE)
        length = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
        if length > MAX_PERIOD:
            raise _invalid("window", WINDOW_RULE)
        start = end - length
    if start >= end:
        raise _invalid("from", "must be before to")
    if end - start > MAX_PERIOD:
        raise _invalid("from", "the period may be at most 400 days long")
    return Period(start=start, end=end, now=now)
