"""HTTP for uptime questions (keys and rate limit: app/http/auth.py, app/http/limiter.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.http.context import connection, now
from app.http.errors import error_response
from app.uptime import queries
from app.uptime.period import parse_period

bp = Blueprint("uptime", __name__, url_prefix="/api/daemon")


@bp.get("/uptime")
def fleet_uptime() -> Response:
    period = parse_period(request.args, now=now())
    return jsonify({**period.wire_fields(), "daemons": queries.summaries(connection(), period)})


@bp.get("/<daemon_id:daemon_id>/uptime")
def daemon_uptime(daemon_id: str) -> Response:
    period = parse_period(request.args, now=now())
    conn = connection()
    found = queries.summaries(conn, period, [daemon_id])
    if not found:
        return error_response(404, f"No history for daemon {daemon_id!r} in this period")
    return jsonify(
        {
            **period.wire_fields(),
            **found[0],
            "downIntervals": queries.down_intervals(conn, period, daemon_id),
        }
    )
