"""HTTP for the registry: parse, authorise, call the service, serialise."""

from __future__ import annotations

import json
from datetime import timedelta

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import UnsupportedMediaType

from app.http.auth import current_caller
from app.http.context import connection, now, settings, this_app, this_request
from app.http.errors import error_response
from app.registry import absence, expiry, outage_grace, service
from app.registry.schemas import (
    Body,
    HeartbeatIn,
    InvalidInput,
    RegistrationIn,
    parse_body,
    region_error,
)
from app.registry.wire import isoformat_z

bp = Blueprint("daemons", __name__, url_prefix="/api/daemon")

PROBE_KEY = "daemon_health_liveness_probe"
# The heartbeat's success body never changes: rendered once, not on every call.
HEARTBEAT_ACCEPTED = json.dumps({"success": True}, separators=(",", ":")).encode()


@bp.errorhandler(service.NotOwner)
def not_owner_response(exc: service.NotOwner) -> Response:
    return error_response(
        403, f"Daemon {exc.daemon_id!r} is registered with another key; "
        "a daemon key may only act on the daemons registered with it"
    )


@bp.before_request
def note_service_alive() -> None:
    # About once a second per process; after an outage of our own this grants
    # grace before the request can judge any daemon stale.
    if this_app().extensions[PROBE_KEY].due(now()):
        outage_grace.observe(connection(), now=now(), ttl=_ttl())


def _ttl() -> timedelta:
    return expiry.ttl(settings().daemon_ttl_seconds)


def json_body(model: type[Body]) -> Body:
    req = this_request()
    if req.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    return parse_body(model, req.get_data(cache=False))


@bp.post("/register")
def register() -> tuple[Response, int]:
    reg = json_body(RegistrationIn)
    service.register(
        connection(), reg, now=now(), ttl=_ttl(), owner=current_caller().owner,
        default_region=settings().service_region,
    )
    body = {
        "success": True,
        "daemonId": reg.daemon_id,
        "registeredAt": isoformat_z(reg.registered_at),
        # Beside the specification's fields: agents pace their heartbeats from it.
        "ttlSeconds": settings().daemon_ttl_seconds,
    }
    return jsonify(body), 201


@bp.post("/heartbeat")
def heartbeat() -> Response:
    beat = json_body(HeartbeatIn)
    if not service.heartbeat(connection(), beat, now=now(), ttl=_ttl(), owner=current_caller().owner):
        # The specification's 404, and beside it why, so an agent can tell a planned stop.
        why = absence.reason(connection(), beat.daemon_id)
        return error_response(404, "Daemon not registered", reason=why)
    return Response(HEARTBEAT_ACCEPTED, mimetype="application/json")


@bp.get("/health")
def health() -> Response:
    region = _region_param()
    # A GET reaps, and HEAD (which Flask routes here) drops the body: reaping for it
    # would take the once-only stale report from everyone. It checks key and query only.
    if request.method == "HEAD":
        return Response(mimetype="application/json")
    # The body comes ready-made (on Postgres, rendered by the database itself).
    body = service.health(connection(), now=now(), region=region)
    return Response(body, mimetype="application/json")


def _region_param() -> str | None:
    """``?region=``: one region's daemons only; absent, the whole fleet."""
    region = request.args.get("region")
    if region is not None and (problem := region_error(region)):
        raise InvalidInput(f"Invalid query parameter region: {problem}", {"region": problem})
    return region


@bp.get("/<daemon_id:daemon_id>")
def get_daemon(daemon_id: str) -> Response:
    state = service.get(connection(), daemon_id, now=now(), owner=current_caller().owner)
    if state is None:
        return error_response(404, "Daemon not registered")
    return jsonify(state)


@bp.delete("/<daemon_id:daemon_id>")
def deregister(daemon_id: str) -> Response:
    if not service.deregister(connection(), daemon_id, now=now(), owner=current_caller().owner):
        return error_response(404, "Daemon not registered")
    return jsonify({"success": True, "daemonId": daemon_id})
