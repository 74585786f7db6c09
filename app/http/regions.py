"""HTTP for regions: GET /api/regions (read-only; never reaps)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.alerts import region_outages
from app.http.context import connection, now
from app.registry import regions

bp = Blueprint("regions", __name__, url_prefix="/api")


@bp.get("/regions")
def list_regions() -> Response:
    conn = connection()
    return jsonify(regions.summaries(conn, now=now(), disrupted=region_outages.ongoing(conn)))
