"""GET /metrics, for Prometheus. Needs METRICS_API_KEY (or, unset, an admin key),
sent as X-API-Key or as ``Authorization: Bearer <key>`` (Prometheus' own way)."""

from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from app.auth import API_KEY_HEADER, key_matches
from app.http.context import connection, now
from app.http.errors import error_response
from app.metrics.fleet import FleetCollector

bp = Blueprint("metrics", __name__)


def _supplied_key() -> str:
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        return bearer.removeprefix("Bearer ").strip()
    return request.headers.get(API_KEY_HEADER, "")


@bp.get("/metrics")
def metrics() -> Response:
    keys = current_app.config["METRICS_API_KEYS"] or current_app.config["ADMIN_API_KEYS"]
    supplied = _supplied_key()
    if not supplied:
        return error_response(401, f"Missing key: send {API_KEY_HEADER} or Authorization: Bearer")
    if not key_matches(supplied, keys):
        return error_response(401, "Invalid metrics key")
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        requests_registry = CollectorRegistry()
        MultiProcessCollector(requests_registry)
    else:
        requests_registry = REGISTRY
    with connection().begin():
        fleet_registry = CollectorRegistry()
        fleet_registry.register(FleetCollector(connection(), now()))
        body = generate_latest(requests_registry) + generate_latest(fleet_registry)
    return Response(body, content_type=CONTENT_TYPE_LATEST)
