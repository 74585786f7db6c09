"""HTTP for maintenance windows: /api/maintenance (keys and rate limit: app/http/auth.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.http.context import connection, now
from app.http.errors import error_response
from app.http.registry import json_body
from app.maintenance import windows
from app.maintenance.schemas import MaintenanceIn

bp = Blueprint("maintenance", __name__, url_prefix="/api/maintenance")

# Ids are 64-bit; a larger one in the URL names no window (and no database could look it up).
MAX_WINDOW_ID = 2**63 - 1


@bp.post("")
def open_window() -> tuple[Response, int]:
    spec = windows.check(json_body(MaintenanceIn), now=now())
    return jsonify(windows.create(connection(), spec, now=now())), 201


@bp.get("")
def list_windows() -> Response:
    return jsonify({"windows": windows.current_and_upcoming(connection(), now=now())})


@bp.delete("/<int:window_id>")
def end_window(window_id: int) -> Response:
    ended = windows.end(connection(), window_id, now=now()) if window_id <= MAX_WINDOW_ID else None
    if ended is None:
        return error_response(404, f"No maintenance window {window_id}")
    return jsonify(ended)
