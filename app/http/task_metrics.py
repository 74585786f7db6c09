"""HTTP for task metrics; same key, rate limit and period rules as uptime."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.http.context import connection, now
from app.http.errors import error_response
from app.task_metrics import summaries
from app.uptime import queries as uptime
from app.uptime.period import parse_period, wire_fields

bp = Blueprint("task_metrics", __name__, url_prefix="/api/daemon")


@bp.get("/metrics")
def fleet_metrics() -> Response:
    period = parse_period(request.args, now=now())
    return jsonify({**period.wire_fields(), **summaries.fleet(connection(), period)})


@bp.get("/<daemon_id:daemon_id>/metrics")
def daemon_metrics(daemon_id: str) -> Response:
    period = parse_period(request.args, now=now())
    step = summaries.parse_step(request.args, period)
    conn = connection()
    total, points = summaries.series(conn, period, daemon_id, step)
    # History means task counts or a span of its life (uptime's timeline) in the period.
    if not total["tasks"] and not summaries.per_daemon(conn, period, daemon_id) and not uptime.summaries(
        conn, period, [daemon_id]
    ):
        return error_response(404, f"No history for daemon {daemon_id!r} in this period")
    return jsonify(
        {
            **period.wire_fields(),
            "daemonId": daemon_id,
            **total,
            "series": [{**p, **wire_fields(p["from"], p["to"])} for p in points],
        }
    )
