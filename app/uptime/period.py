"""The period an uptime question is about, from ?window= or ?from=&to=."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.registry.schemas import (
    EARLIEST_TIMESTAMP,
    EARLIEST_TIMESTAMP_TEXT,
    TIMESTAMP_PATTERN,
    InvalidInput,
    parse_timestamp,
)
from app.registry.wire import isoformat_z

_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
MAX_PERIOD = timedelta(days=400)
DEFAULT_WINDOW = "24h"
WINDOW_RULE = "must be a number and a unit m, h or d (e.g. 1h, 24h, 7d, 30d), at most 400d"
WINDOW_TOO_EARLY = (
    f"reaches back before {EARLIEST_TIMESTAMP_TEXT}; choose a later to or a shorter window"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
PLUS_AS_SPACE_RULE = (
    "has a space where its offset's '+' was: a query string reads '+' as a space, "
    "so encode it as %2B (e.g. 2026-01-25T12:00:00%2B01:00)"
)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    now: datetime

    @property
    def observed_end(self) -> datetime:
        """The end of what can be known: nothing has happened after now."""
        return min(self.end, self.now)

    def wire_fields(self) -> dict[str, str]:
        """The period as the API writes it."""
        return wire_fields(self.start, self.end)


def wire_fields(start: datetime, end: datetime) -> dict[str, str]:
    """``from`` and ``to`` of a period or a series point, as the API writes them."""
    return {"from": isoformat_z(start), "to": isoformat_z(end)}


def duration(text: str) -> timedelta | None:
    """A length written as a number and a unit m, h or d (``30m``, ``24h``); None if not one."""
    match = _WINDOW.fullmatch(text)
    return None if match is None else timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def _invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"Invalid query parameter {param}: {message}", {param: message})


def _timestamp(args: Mapping[str, str], param: str) -> datetime | None:
    if param not in args:
        return None
    value = args[param]
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        rule = PLUS_AS_SPACE_RULE if _plus_decoded_as_space(value) else str(exc)
        raise _invalid(param, rule) from None


def _plus_decoded_as_space(value: str) -> bool:
    # A query string decodes '+' to a space, so an unencoded +hh:mm offset arrives as " hh:mm".
    return " " in value and _TIMESTAMP.fullmatch(value.replace(" ", "+", 1)) is not None


def parse_period(args: Mapping[str, str], *, now: datetime) -> Period:
    """Read ``window`` (default 24h, ending at ``to`` or now) or ``from``/``to``."""
    if "window" in args and "from" in args:
        raise _invalid("window", "give either window or from, not both")
    end = _timestamp(args, "to") or now
    start = _timestamp(args, "from")
    if start is None:
        length = duration(args.get("window", DEFAULT_WINDOW))
        if length is None or length > MAX_PERIOD:
            raise _invalid("window", WINDOW_RULE)
        if length > end - EARLIEST_TIMESTAMP:
            raise _invalid("window", WINDOW_TOO_EARLY)
        start = end - length
    if start >= end:
        raise _invalid("from", "must be before to")
    if end - start > MAX_PERIOD:
        raise _invalid("from", "the period may be at most 400 days long")
    return Period(start=start, end=end, now=now)
