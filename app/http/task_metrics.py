"""HTTP for task metrics; same key, rate limit and period rules as uptime."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.http.context import connection, now
from app.http.errors import error_response
from app.registry.wire import isoformat_z
from app.task_metrics import summaries
from app.uptime import queries as uptime
from app.uptime.period import Period, parse_period

bp = Blueprint("task_metrics", __name__, url_prefix="/api/daemon")


def _period_fields(period: Period) -> dict[str, str]:
    return {"from": isoformat_z(period.start), "to": isoformat_z(period.end)}


@bp.get("/metrics")
def fleet_metrics() -> Response:
    period = parse_period(request.args, now=now())
    return jsonify({**_period_fields(period), **summaries.fleet(connection(), period)})


@bp.get("/<daemon_id:daemon_id>/metrics")
def daemon_metrics(daemon_id: str) -> Response:
    period = parse_period(request.args, now=now())
    step = summaries.parse_step(request.args, period)
    conn = connection()
    total, points = summaries.series(conn, period, daemon_id, step)
    # History means task counts or a span of its life (uptime's timeline) in the period.
    if not total["tasks"] and not summaries.per_daemon(conn, period, daemon_id) and not uptime.summaries(
        conn, period, daemon_id
    ):
        return error_response(404, f"No history for daemon {daemon_id!r} in this period")
    return jsonify(
        {
            **_period_fields(period),
            "daemonId": daemon_id,
            **total,
            "series": [{**p, "from": isoformat_z(p["from"]), "to": isoformat_z(p["to"])} for p in points],
        }
    )
