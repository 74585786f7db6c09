"""Which daemons a fleet read asks for: filters, order and page (GET /api/daemons).

Each filter is one entry of ``FILTERS``: its query parameter, how its value is
read and the SQL condition it adds, so a new filter is one entry (the
region's was). Pages are keyset pages: the cursor names the last row's place in the
order, so paging on never repeats a row nor skips one that kept its place.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, or_, true

from app.models import STATUSES, daemons
from app.registry import expiry
from app.registry.regions import in_region
from app.registry.schemas import DAEMON_ID_PATTERN, DAEMON_ID_RULE, InvalidInput, region_error
from app.store.sql import json_array_contains

STALE = "stale"
# What a daemon shows as: its status while live, "stale" once expired.
SHOWN_STATUSES = (STALE, *reversed(STATUSES))  # worst first: the "status" order
SORTS = {
    "id": "by daemon id",
    "status": "stale first, then unhealthy, degraded, healthy; by daemon id within each",
}
MAX_LIMIT = 500

_DAEMON_ID = re.compile(DAEMON_ID_PATTERN)
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
TEXT_RULE = "must be 1 to 128 characters, without control characters"
STATUS_RULE = f"must be one or more of {', '.join(SHOWN_STATUSES)}, comma-separated"
CURSOR_RULE = "is not a cursor this endpoint gave for this sort; start again without it"
SORT_RULE = f"must be one of {', '.join(SORTS)}"


def _text(raw: str) -> str:
    if not _TEXT.fullmatch(raw):
        raise ValueError(TEXT_RULE)
    return raw


def _daemon_id(raw: str) -> str:
    if not _DAEMON_ID.fullmatch(raw):
        raise ValueError(DAEMON_ID_RULE)
    return raw


def _region(raw: str) -> str:
    if problem := region_error(raw):
        raise ValueError(problem)
    return raw


def _statuses(raw: str) -> frozenset[str]:
    chosen = frozenset(raw.split(","))
    if not chosen <= set(SHOWN_STATUSES):
        raise ValueError(STATUS_RULE)
    return chosen


def shows_as(status: str, now: datetime) -> ColumnElement[bool]:
    """Rows that show as ``status`` (one of SHOWN_STATUSES) at ``now``."""
    if status == STALE:
        return expiry.expired(now)
    return expiry.live(now) & (daemons.c.status == status)


@dataclass(frozen=True)
class Filter:
    description: str  # for the OpenAPI document
    parse: Callable[[str], Any]  # raises ValueError with the rule
    condition: Callable[[Any, datetime], ColumnElement[bool]]


FILTERS: Mapping[str, Filter] = {
    "id": Filter(
        "Only the daemon with exactly this id (live or stale).",
        _daemon_id,
        lambda daemon_id, now: daemons.c.daemon_id == daemon_id,
    ),
    "q": Filter(
        "Only daemons whose id contains this text (case-insensitive).",
        _text,
        lambda text, now: daemons.c.daemon_id.icontains(text, autoescape=True),
    ),
    "status": Filter(
        f"Only daemons showing one of these, comma-separated: {', '.join(SHOWN_STATUSES)}.",
        _statuses,
        lambda chosen, now: or_(false(), *(shows_as(s, now) for s in sorted(chosen))),
    ),
    "capability": Filter(
        "Only daemons that declared this capability (exact).",
        _text,
        lambda name, now: json_array_contains(daemons.c.capabilities, name),
    ),
    "region": Filter(
        "Only daemons in this region (exact; the rule of a registration's region).",
        _region,
        lambda region, now: in_region(region),
    ),
}


def rank(now: datetime) -> ColumnElement[int]:
    """A row's place in SHOWN_STATUSES: 0 for stale, 1 for unhealthy, ..."""
    return case(
        (expiry.expired(now), 0),
        *((daemons.c.status == s, i) for i, s in enumerate(SHOWN_STATUSES) if s != STALE),
    )


@dataclass(frozen=True)
class FleetQuery:
    """A parsed request for daemons: filter values by parameter, sort, and page."""

    filters: Mapping[str, Any] = field(default_factory=dict)
    sort: str = "id"
    limit: int | None = None  # None: every matching daemon
    after: tuple[int, str] | None = None  # the last row's (rank, id) on the previous page

    def condition(self, now: datetime) -> ColumnElement[bool]:
        return and_(true(), *(FILTERS[name].condition(value, now) for name, value in self.filters.items()))

    def order(self, now: datetime) -> list[ColumnElement[Any]]:
        return [rank(now), daemons.c.daemon_id] if self.sort == "status" else [daemons.c.daemon_id]

    def keyset(self, now: datetime) -> ColumnElement[bool]:
        """Rows after the cursor's in this order (all rows without one)."""
        if self.after is None:
            return true()
        last_rank, last_id = self.after
        after_id = daemons.c.daemon_id > last_id
        if self.sort != "status":
            return after_id
        return (rank(now) > last_rank) | ((rank(now) == last_rank) & after_id)

    def cursor_after(self, row_rank: int, daemon_id: str) -> str:
        """The cursor of the page that follows the row at (``row_rank``, ``daemon_id``)."""
        raw = json.dumps([self.sort, row_rank, daemon_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid(name: str, rule: str) -> InvalidInput:
    return InvalidInput(f"Invalid query parameter {name}: {rule}", {name: rule})


def _cursor(raw: str, sort: str) -> tuple[int, str]:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        cursor_sort, last_rank, last_id = json.loads(
            base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        )
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise _invalid("cursor", CURSOR_RULE) from None
    if (
        cursor_sort != sort
        or type(last_rank) is not int
        or not 0 <= last_rank < len(SHOWN_STATUSES)
        or not isinstance(last_id, str)
        or not _DAEMON_ID.fullmatch(last_id)  # only ids reach SQL (no NUL for Postgres to refuse)
    ):
        raise _invalid("cursor", CURSOR_RULE)
    return last_rank, last_id


def parse_fleet_query(args: Mapping[str, str], *, limit: int | None) -> FleetQuery:
    """Read the filters, ``sort`` and ``cursor`` (``limit`` read by the caller); 400 naming a bad one."""
    filters = {}
    for name, spec in FILTERS.items():
        if name in args:
            try:
                filters[name] = spec.parse(args[name])
            except ValueError as exc:
                raise _invalid(name, str(exc)) from None
    sort = args.get("sort", "id")
    if sort not in SORTS:
        raise _invalid("sort", SORT_RULE)
    after = _cursor(args["cursor"], sort) if "cursor" in args else None
    return FleetQuery(filters=filters, sort=sort, limit=limit, after=after)
