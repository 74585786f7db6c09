"""HTTP for the registry: parse, authorise, call the service, serialise."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import UnsupportedMediaType

from app.auth import require_api_key
from app.clock import Clock
from app.daemons import service
from app.daemons.schemas import Body, HeartbeatIn, RegistrationIn, parse_body
from app.db import connection
from app.errors import error_response
from app.timestamps import isoformat_z

bp = Blueprint("daemons", __name__, url_prefix="/api/daemon")
bp.before_request(require_api_key)

CLOCK_KEY = "daemon_health_clock"


def _now():
    clock: Clock = current_app.extensions[CLOCK_KEY]
    return clock.now()


def _ttl() -> timedelta:
    return timedelta(seconds=current_app.config["DAEMON_TTL_SECONDS"])


def _json_body(model: type[Body]) -> Body:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    return parse_body(model, request.get_data(cache=False))


@bp.post("/register")
def register() -> tuple[Response, int]:
    reg = _json_body(RegistrationIn)
    service.register(connection(), reg, now=_now(), ttl=_ttl())
    body = {"success": True, "daemonId": reg.daemon_id, "registeredAt": isoformat_z(reg.registered_at)}
    return jsonify(body), 201


@bp.post("/heartbeat")
def heartbeat() -> Response:
    beat = _json_body(HeartbeatIn)
    if not service.heartbeat(connection(), beat, now=_now(), ttl=_ttl()):
        return error_response(404, "Daemon not registered")
    return jsonify({"success": True})


@bp.get("/health")
def health() -> Response:
    report = service.health(connection(), now=_now(), ttl=_ttl())
    return jsonify(
        {
            "activeDaemons": report.active,
            "stale": report.stale,
            "totalActive": len(report.active),
        }
    )
