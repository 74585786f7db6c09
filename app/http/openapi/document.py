"""GET /api/openapi.json: every endpoint, body and error as the service behaves."""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.http.maintenance import MAX_WINDOW_ID
from app.http.openapi import responses as r
from app.maintenance.schemas import MaintenanceIn
from app.registry.schemas import (
    DAEMON_ID_PATTERN,
    REGION_PATTERN,
    RESERVED_DAEMON_IDS,
    TIMESTAMP_PATTERN,
    HeartbeatIn,
    LeaseRequestIn,
    RegistrationIn,
)
from app.registry.fleet_query import FILTERS, MAX_LIMIT, SORTS
from app.uptime import strips
from app.uptime.period import MAX_PERIOD

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
MODELS: list[type[BaseModel]] = [
    RegistrationIn,
    HeartbeatIn,
    r.Error,
    r.RegisterResponse,
    r.Success,
    r.DeregisterResponse,
    r.DaemonState,
    r.HealthResponse,
    r.FleetResponse,
    r.FleetHistory,
    r.EventsResponse,
    r.Regions,
    r.FleetUptime,
    r.DaemonUptime,
    r.FleetTaskMetrics,
    r.DaemonTaskMetrics,
    LeaseRequestIn,
    r.LeaseState,
    r.LeasesResponse,
    r.LeaseHeld,
    MaintenanceIn,
    r.MaintenanceWindow,
    r.MaintenanceWindows,
]
ERRORS = {
    400: "The body or a parameter is unusable; `details` names each problem.",
    401: "Missing or wrong X-API-Key.",
    403: "This kind of key may not call this endpoint, or a daemon key acted on a daemon "
    "registered with another key; `error` says what the key may do.",
    404: "No such daemon or maintenance window (or endpoint); for a lease release, also `Lease not held`.",
    405: "Method not allowed here; see the Allow header.",
    413: "Request body over MAX_CONTENT_LENGTH.",
    415: "Content-Type is not application/json.",
    429: "Rate limit exceeded; see Retry-After.",
    500: "A bug; quote `requestId`.",
    503: "Database unavailable; see Retry-After.",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    ok: tuple[int, type[BaseModel] | None, str],
    errors: list[int],
    *,
    body: type[BaseModel] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    status, model, description = ok
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(status): _json(_ref(model), description) if model else {"description": description},
            **{str(code): _json(_ref(r.Error), ERRORS[code]) for code in sorted(set(errors) | {500})},
        },
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if parameters:
        operation["parameters"] = parameters
    if not secured:
        operation["security"] = []
    return operation


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


DAEMON_ID = {
    "name": "daemonId",
    "in": "path",
    "required": True,
    "schema": {
        "type": "string",
        "pattern": DAEMON_ID_PATTERN,
        "not": {"enum": sorted(RESERVED_DAEMON_IDS)},
    },
}
PERIOD = [
    _query(
        "window",
        f"Length of the period ending at `to`: 30m, 24h, 7d… (at most {MAX_PERIOD.days}d; default 24h).",
        {"type": "string", "pattern": r"^[1-9][0-9]{0,5}[mhd]$"},
    ),
    _query("from", "Start of the period (instead of window).", {"type": "string", "pattern": TIMESTAMP_PATTERN}),
    _query("to", "End of the period (default now).", {"type": "string", "pattern": TIMESTAMP_PATTERN}),
]
WINDOW_ID = {
    "name": "windowId",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WINDOW_ID},
}
STEP = _query(
    "step",
    "Length of each point of the series: 5m, 1h, 1d… (default 1h; at least 1m, at most 10,000 points).",
    {"type": "string", "pattern": r"^[1-9][0-9]{0,5}[mhd]$"},
)
# Every documented endpoint takes a key, and each refuses some kind of key (app/http/auth.py): 403.
WRITE_ERRORS = [400, 401, 403, 413, 415, 429, 503]
READ_ERRORS = [401, 403, 429, 503]
LEASE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": DAEMON_ID_PATTERN}}
LEASE_HELD = _json(_ref(r.LeaseHeld), "Another daemon's session holds the lease: whose, and until when.")


def _lease_operation(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """An operation on one lease, which may also answer 409 with the holder."""
    operation = _operation(*args, **kwargs)
    operation["responses"]["409"] = LEASE_HELD
    return operation



@cache
def document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(model, "validation") for model in MODELS], ref_template=REF, by_alias=True
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Daemon health service",
            "version": "1.0.0",
            "description": "A live registry of worker daemons: registration, heartbeats, "
            "stale detection, uptime history and alerts.",
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/daemon/register": {
                "post": _operation(
                    "Register a daemon (an upsert: a fresh session)",
                    (201, r.RegisterResponse, "Registered."),
                    WRITE_ERRORS,
                    body=RegistrationIn,
                )
            },
            "/api/daemon/heartbeat": {
                "post": _operation(
                    "Record a heartbeat",
                    (200, r.Success, "Recorded."),
                    [*WRITE_ERRORS, 404],
                    body=HeartbeatIn,
                )
            },
            "/api/daemon/health": {
                "get": _operation(
                    "Active daemons; expired ones are removed and reported stale once",
                    (200, r.HealthResponse, "The fleet, or one region of it."),
                    [400, *READ_ERRORS],
                    parameters=[
                        _query("region", "Only this region's daemons: only they are reaped and listed.",
                               {"type": "string", "pattern": REGION_PATTERN}),
                    ],
                )
            },
            "/api/daemon/uptime": {
                "get": _operation(
                    "Uptime of every daemon seen in the period",
                    (200, r.FleetUptime, "Per-daemon uptime."),
                    [400, *READ_ERRORS],
                    parameters=PERIOD,
                )
            },
            "/api/daemon/metrics": {
                "get": _operation(
                    "Tasks, failures, error rate and average task time: the fleet's and each active daemon's",
                    (200, r.FleetTaskMetrics, "Task metrics."),
                    [400, *READ_ERRORS],
                    parameters=PERIOD,
                )
            },
            "/api/daemon/{daemonId}/metrics": {
                "get": _operation(
                    "One daemon's task metrics over the period, and a series of steps",
                    (200, r.DaemonTaskMetrics, "The daemon's task metrics."),
                    [400, 404, *READ_ERRORS],
                    parameters=[DAEMON_ID, *PERIOD, STEP],
                )
            },
            "/api/daemon/{daemonId}": {
                "get": _operation(
                    "One live daemon's state",
                    (200, r.DaemonState, "The daemon."),
                    [404, *READ_ERRORS],
                    parameters=[DAEMON_ID],
                ),
                "delete": _operation(
                    "Deregister a daemon (graceful stop; planned downtime)",
                    (200, r.DeregisterResponse, "Deregistered."),
                    [404, *READ_ERRORS],
                    parameters=[DAEMON_ID],
                ),
            },
            "/api/daemon/{daemonId}/uptime": {
                "get": _operation(
                    "One daemon's uptime and down intervals",
                    (200, r.DaemonUptime, "The daemon's uptime."),
                    [400, 404, *READ_ERRORS],
                    parameters=[DAEMON_ID, *PERIOD],
                )
            },
            "/api/daemons": {
                "get": _operation(
                    "Daemon rows, expired ones marked stale (never reaps); filtered, sorted, paged",
                    (200, r.FleetResponse, "The fleet."),
                    [400, *READ_ERRORS],
                    parameters=[
                        *(_query(name, f.description, {"type": "string"}) for name, f in FILTERS.items()),
                        _query(
                            "sort",
                            "; ".join(f"{name}: {order}" for name, order in SORTS.items()) + " (default id).",
                            {"type": "string", "enum": list(SORTS)},
                        ),
                        _query(
                            "limit",
                            "At most this many per page; without it, every matching daemon.",
                            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        ),
                        _query("cursor", "The previous page's nextCursor (same sort).", {"type": "string"}),
                    ],
                )
            },
            "/api/daemons/history": {
                "get": _operation(
                    "A few daemons' history strips, uptime and tasks per slot, in one read",
                    (200, r.FleetHistory, "One entry per id asked for."),
                    [400, *READ_ERRORS],
                    parameters=[
                        {
                            **_query(
                                "ids",
                                f"Daemon ids, comma-separated (1 to {strips.MAX_IDS}).",
                                {"type": "string"},
                            ),
                            "required": True,
                        },
                        *PERIOD,
                        _query(
                            "slots",
                            f"How many equal slots the period is cut into (default {strips.DEFAULT_SLOTS}).",
                            {"type": "integer", "minimum": 1, "maximum": strips.MAX_SLOTS},
                        ),
                    ],
                )
            },
            "/api/leases": {
                "get": _operation(
                    "Every lease ever acquired, with its current holder (null while free)",
                    (200, r.LeasesResponse, "The leases."),
                    READ_ERRORS,
                )
            },
            "/api/leases/{name}": {
                "post": _lease_operation(
                    "Acquire a lease for a daemon's current session (kept by its heartbeats)",
                    (200, r.LeaseState, "Held by this daemon's session, newly or already."),
                    [*WRITE_ERRORS, 404],
                    body=LeaseRequestIn,
                    parameters=[LEASE_NAME],
                ),
                "delete": _lease_operation(
                    "Release a lease this daemon's session holds",
                    (204, None, "Released."),
                    [400, 404, *READ_ERRORS],
                    parameters=[
                        LEASE_NAME,
                        {"name": "daemonId", "in": "query", "required": True, "description": "The holder.",
                         "schema": {"type": "string", "pattern": DAEMON_ID_PATTERN}},
                    ],
                ),
            },
            "/api/regions": {
                "get": _operation(
                    "Each region's daemon counts and whether it is disrupted (never reaps)",
                    (200, r.Regions, "The regions."),
                    READ_ERRORS,
                )
            },
            "/api/maintenance": {
                "post": _operation(
                    "Open a maintenance window: no alerts, downtime counted as planned",
                    (201, r.MaintenanceWindow, "Opened (a past from starts it now)."),
                    WRITE_ERRORS,
                    body=MaintenanceIn,
                ),
                "get": _operation(
                    "Current and upcoming maintenance windows, the soonest first",
                    (200, r.MaintenanceWindows, "The windows."),
                    READ_ERRORS,
                ),
            },
            "/api/maintenance/{windowId}": {
                "delete": _operation(
                    "End a window now (kept for history); cancel one that has not started",
                    (200, r.MaintenanceWindow, "Ended, cancelled, or already over."),
                    [404, *READ_ERRORS],
                    parameters=[WINDOW_ID],
                )
            },
            "/api/events": {
                "get": _operation(
                    "History events after an id, oldest first",
                    (200, r.EventsResponse, "Events."),
                    [400, *READ_ERRORS],
                    parameters=[
                        _query("after", "Only events with a larger id.", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}),
                        _query("limit", "At most this many.", {"type": "integer", "minimum": 1, "maximum": 500}),
                        _query(
                            "order",
                            "oldest (default): the first `limit` events after `after`; newest: the last "
                            "`limit` of them. Either way the answer lists them oldest first.",
                            {"type": "string", "enum": ["oldest", "newest"]},
                        ),
                    ],
                )
            },
        },
    }


@bp.get("/api/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
