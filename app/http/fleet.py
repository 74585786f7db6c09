"""HTTP for the read-only fleet views (registry.reads): /api/daemons, /api/events."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.http.context import connection, now
from app.maintenance import coverage
from app.registry import reads
from app.registry.schemas import InvalidInput
from app.registry.wire import isoformat_z

bp = Blueprint("fleet", __name__, url_prefix="/api")


def _int_param(name: str, default: int, *, minimum: int, maximum: int) -> int:
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
    conn = connection()
    daemons = reads.fleet(conn, now=now())
    windows = coverage.active_windows(conn, at=now())
    for daemon in daemons:
        # The running maintenance window that covers it, so screens can show it as planned.
        window = coverage.covering(windows, daemon["daemonId"], daemon["capabilities"])
        daemon["maintenance"] = None if window is None else {
            "id": window.id, "reason": window.reason, "to": isoformat_z(window.ends_at)
        }
    stale = sum(1 for d in daemons if d["stale"])
    return jsonify({"daemons": daemons, "totalActive": len(daemons) - stale, "totalStale": stale})


@bp.get("/events")
def list_events() -> Response:
    after = _int_param("after", 0, minimum=0, maximum=2**63 - 1)
    limit = _int_param("limit", 100, minimum=1, maximum=reads.MAX_EVENTS)
    found = reads.events(connection(), after=after, limit=limit)
    return jsonify({"events": found, "lastId": found[-1]["id"] if found else after})
