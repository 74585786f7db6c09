"""HTTP for the read-only fleet views (registry.reads): /api/daemons, /api/daemons/history, /api/events."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.http.context import connection, now
from app.maintenance import coverage
from app.registry import reads
from app.registry.fleet_query import MAX_LIMIT, parse_fleet_query
from app.registry.schemas import InvalidInput
from app.registry.wire import isoformat_z
from app.uptime import strips
from app.uptime.period import parse_period

bp = Blueprint("fleet", __name__, url_prefix="/api")


def _int_param(name: str, default: int | None, *, minimum: int, maximum: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    # isascii(): str.isdigit() also accepts digits such as "¹" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        message = f"must be an integer from {minimum} to {maximum}"
        raise InvalidInput(f"Invalid query parameter {name}: {message}", {name: message})
    return int(raw)


@bp.get("/daemons")
def list_daemons() -> Response:
    # Without a limit, every matching daemon (what scripts written before paging expect).
    limit = _int_param("limit", None, minimum=1, maximum=MAX_LIMIT)
    query = parse_fleet_query(request.args, limit=limit)
    conn = connection()
    fleet = reads.fleet(conn, query, now=now())
    windows = coverage.active_windows(conn, at=now())
    for daemon in fleet["daemons"]:
        # The running maintenance window that covers it, so screens can show it as planned.
        window = coverage.covering(windows, daemon["daemonId"], daemon["capabilities"], daemon["region"])
        daemon["maintenance"] = None if window is None else {
            "id": window.id, "reason": window.reason, "to": isoformat_z(window.ends_at)
        }
    return jsonify(fleet)


@bp.get("/daemons/history")
def daemons_history() -> Response:
    period = parse_period(request.args, now=now())
    slots = _int_param("slots", strips.DEFAULT_SLOTS, minimum=1, maximum=strips.MAX_SLOTS)
    daemon_ids = strips.parse_ids(request.args)
    return jsonify({**period.wire_fields(), **strips.history(connection(), period, daemon_ids, slots)})


@bp.get("/events")
def list_events() -> Response:
    after = _int_param("after", 0, minimum=0, maximum=2**63 - 1)
    limit = _int_param("limit", 100, minimum=1, maximum=reads.MAX_EVENTS)
    order = request.args.get("order", "oldest")
    if order not in ("oldest", "newest"):
        rule = "must be oldest or newest"
        raise InvalidInput(f"Invalid query parameter order: {rule}", {"order": rule})
    found = reads.events(connection(), after=after, limit=limit, latest=order == "newest")
    return jsonify({"events": found, "lastId": found[-1]["id"] if found else after})
