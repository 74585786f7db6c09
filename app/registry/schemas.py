"""Request bodies, parsed strictly into typed values.

Known fields are strict (no ``"42"`` for an integer, no ``true`` for a number,
no naive timestamps); unknown fields are ignored so newer daemons can send
more. Error wording is stable and names the field: clients show it to people.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.models import STATUSES, Status

DAEMON_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
DAEMON_ID_RULE = (
    "must be 1-128 characters: letters, digits, '_', '.', ':' or '-', "
    "starting with a letter or digit"
)
# A region name: a daemon id's characters, at most 64 of them (daemons.region).
REGION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_REGION = re.compile(REGION_PATTERN)
REGION_RULE = (
    "must be 1-64 characters: letters, digits, '_', '.', ':' or '-', "
    "starting with a letter or digit"
)
# Names of the fixed paths under /api/daemon/, which /api/daemon/<daemonId> cannot reach.
RESERVED_DAEMON_IDS = frozenset({"register", "heartbeat", "health", "uptime", "metrics"})
# For URLs: a daemon id, but never one of the fixed paths above.
DAEMON_ID_PATH_REGEX = (
    "(?!(?:" + "|".join(sorted(RESERVED_DAEMON_IDS)) + r")(?:/|$))[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
)
# JavaScript daemons count with doubles; beyond 2**53 - 1 integers lose precision.
MAX_SAFE_INTEGER = 2**53 - 1
MAX_POLL_INTERVAL_MS = 24 * 60 * 60 * 1000
FAILED_OVER_PROCESSED_RULE = "must not be more than tasksProcessed (failed tasks are among them)"

# RFC 3339: date, 'T', time, optional fraction, and a mandatory offset.
TIMESTAMP_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
TIMESTAMP_RULE = "must be an ISO-8601 date-time with a time zone, e.g. 2026-01-25T12:00:00Z"
# The calendar less a day at each end. A time within a day of either end can
# leave the calendar when an offset is applied, or when Postgres renders it in
# a session time zone that is not UTC (then the driver cannot read it back).
EARLIEST_TIMESTAMP = datetime(1, 1, 2, tzinfo=UTC)
END_OF_TIMESTAMPS = datetime(9999, 12, 31, tzinfo=UTC)
# isoformat, not strftime: "%Y" drops year 1's leading zeros on glibc.
EARLIEST_TIMESTAMP_TEXT = EARLIEST_TIMESTAMP.isoformat().replace("+00:00", "Z")
TIMESTAMP_RANGE_RULE = (
    f"must be from {EARLIEST_TIMESTAMP_TEXT} up to, not including, "
    + END_OF_TIMESTAMPS.isoformat().replace("+00:00", "Z")
)

# Text no database here can hold: Postgres text and JSONB refuse U+0000, and an
# unpaired surrogate (valid as a JSON escape such as "\ud800") is not UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
STORABLE_TEXT_RULE = "must not contain U+0000 (NUL) or unpaired surrogates (U+D800 to U+DFFF)"


def storable_text(value: str) -> str:
    """``value`` if every database can store it; a field error naming the rule otherwise."""
    # An ASCII string (the usual case) can only hold NUL; isascii() costs nothing.
    if "\x00" in value or (not value.isascii() and _UNSTORABLE.search(value)):
        raise PydanticCustomError("unstorable_text", STORABLE_TEXT_RULE)
    return value


class InvalidInput(ValueError):
    """A request whose body or parameters cannot be used; ``message`` is safe to show."""

    def __init__(self, message: str, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as aware UTC; ValueError naming the broken rule otherwise."""
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(TIMESTAMP_RULE)
    try:
        return _to_utc(value)
    except PydanticCustomError as exc:
        raise ValueError(exc.message()) from None


def _to_utc(value: str) -> datetime:
    try:
        utc = datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        raise PydanticCustomError("timestamp", TIMESTAMP_RULE) from None
    except OverflowError:  # the offset moved it off the calendar
        raise PydanticCustomError("timestamp", TIMESTAMP_RANGE_RULE) from None
    # The year test first: comparing aware datetimes is slow, and this runs per heartbeat.
    if utc.year in (1, 9999) and not EARLIEST_TIMESTAMP <= utc < END_OF_TIMESTAMPS:
        raise PydanticCustomError("timestamp", TIMESTAMP_RANGE_RULE)
    return utc


def region_error(value: str) -> str | None:
    """Why ``value`` cannot name a region (REGION_RULE), or None when it can."""
    return None if _REGION.fullmatch(value) else REGION_RULE


def _not_reserved(value: str) -> str:
    if value in RESERVED_DAEMON_IDS:
        raise PydanticCustomError("reserved", "is reserved for an endpoint; choose another id")
    return value


DaemonId = Annotated[
    str,
    StringConstraints(pattern=DAEMON_ID_PATTERN),
    AfterValidator(_not_reserved),
    Field(json_schema_extra={"not": {"enum": sorted(RESERVED_DAEMON_IDS)}}),
]
Timestamp = Annotated[
    str,
    StringConstraints(pattern=TIMESTAMP_PATTERN),
    AfterValidator(_to_utc),
]
Region = Annotated[str, StringConstraints(pattern=REGION_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(storable_text)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class RegistrationIn(_Body):
    daemon_id: DaemonId = Field(alias="daemonId")
    version: ShortText
    capabilities: list[ShortText] = Field(max_length=64)
    poll_interval: int = Field(alias="pollInterval", ge=1, le=MAX_POLL_INTERVAL_MS)
    registered_at: Timestamp = Field(alias="registeredAt")
    # Absent or null: the region of the instance that takes the registration (SERVICE_REGION).
    region: Region | None = None


class HeartbeatIn(_Body):
    daemon_id: DaemonId = Field(alias="daemonId")
    status: Status
    tasks_processed: int = Field(alias="tasksProcessed", ge=0, le=MAX_SAFE_INTEGER)
    current_task: Annotated[
        str, StringConstraints(max_length=256), AfterValidator(storable_text)
    ] | None = Field(default=None, alias="currentTask")
    last_heartbeat: Timestamp = Field(alias="lastHeartbeat")
    # Optional cumulative counters since registration (app/registry/task_counters.py).
    tasks_failed: int | None = Field(default=None, alias="tasksFailed", ge=0, le=MAX_SAFE_INTEGER)
    task_time_ms: float | None = Field(
        default=None, alias="taskTimeMs", ge=0, le=MAX_SAFE_INTEGER, allow_inf_nan=False
    )

    @field_validator("tasks_failed")
    @classmethod
    def _failed_within_processed(cls, value: int | None, info: ValidationInfo) -> int | None:
        processed = info.data.get("tasks_processed")
        if value is not None and processed is not None and value > processed:
            raise PydanticCustomError("failed_over_processed", FAILED_OVER_PROCESSED_RULE)
        return value

class LeaseRequestIn(_Body):
    """Acquiring a lease (app/leases/): for which daemon's session."""

    daemon_id: DaemonId = Field(alias="daemonId")


Body = TypeVar("Body", bound=_Body)


def parse_body(model: type[Body], raw: bytes) -> Body:
    """Parse a JSON body into ``model`` or raise InvalidInput with per-field messages."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if exc.errors()[0]["type"] != "json_invalid":
            raise _body_error(exc) from None
    # pydantic's parser refuses escaped unpaired surrogates ("\ud800") although
    # JSON's grammar allows them. Only then, parse again with the standard
    # library, so that the answer names the field instead of blaming the JSON.
    data = _standard_json(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _body_error(exc) from None


def _standard_json(raw: bytes) -> Any:
    try:
        # Strict UTF-8: a surrogate may arrive escaped, never as raw bytes.
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise InvalidInput("Request body is not valid JSON") from None


def _body_error(exc: ValidationError) -> InvalidInput:
    details: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            return InvalidInput("Request body is not valid JSON")
        if not error["loc"]:
            return InvalidInput("Request body must be a JSON object")
        field = _field_path(error["loc"])
        details.setdefault(field, _describe(error))
    summary = "; ".join(f"{field} {message}" for field, message in details.items())
    return InvalidInput(f"Invalid request body: {summary}", details)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = str(loc[0])
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _number(value: Any) -> Any:
    # A float bound that is a whole number reads as one: 0, not 0.0.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _describe(error: Any) -> str:
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        # By the pattern, not the name: a list of ids (daemonIds[0]) breaks the id's rule too.
        if ctx.get("pattern") == DAEMON_ID_PATTERN:
            return DAEMON_ID_RULE
        return REGION_RULE if ctx.get("pattern") == REGION_PATTERN else TIMESTAMP_RULE
    if kind in ("timestamp", "reserved", "unstorable_text", "failed_over_processed"):
        return error["msg"]
    if kind == "string_unicode":  # pydantic's own refusal of an unpaired surrogate
        return STORABLE_TEXT_RULE
    messages = {
        "int_type": "must be an integer",
        "float_type": "must be a number",
        "finite_number": "must be a finite number",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "literal_error": "must be one of " + ", ".join(repr(s) for s in STATUSES),
        "greater_than_equal": f"must be at least {_number(ctx.get('ge'))}",
        "less_than_equal": f"must be at most {_number(ctx.get('le'))}",
        "string_too_short": "must not be empty",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
        "too_long": f"must have at most {ctx.get('max_length')} items",
    }
    return messages.get(kind, error["msg"])
