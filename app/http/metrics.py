"""GET /metrics, for Prometheus. Needs an admin, read or metrics key (app/http/auth.py),
sent as X-API-Key or as ``Authorization: Bearer <key>`` (Prometheus' own way)."""

from __future__ import annotations

import os

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from app.http.context import connection, now
from app.metrics.fleet import FleetCollector

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
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
