"""HTTP for leader leases (app/leases/): /api/leases and /api/leases/<name>."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import UnsupportedMediaType

from app.http.auth import current_caller
from app.http.context import connection, now
from app.http.errors import error_response
from app.http.registry import not_owner_response, note_service_alive
from app.leases import service
from app.registry.schemas import (
    DAEMON_ID_PATTERN,
    DAEMON_ID_RULE,
    InvalidInput,
    LeaseRequestIn,
    parse_body,
)
from app.registry.service import NotOwner
from app.registry.wire import isoformat_z

bp = Blueprint("leases", __name__, url_prefix="/api/leases")
# A holder's expiry is judged here, so an outage of the service grants its grace first.
bp.before_request(note_service_alive)
bp.register_error_handler(NotOwner, not_owner_response)

# Lease names follow the daemon id's rules; fullmatch, so no trailing newline slips through.
_IDENTIFIER = re.compile(DAEMON_ID_PATTERN)


def _identifier(value: str | None, field: str, where: str) -> str:
    if value is None:
        raise InvalidInput(f"Invalid {where} {field}: is required", {field: "is required"})
    if not _IDENTIFIER.fullmatch(value):
        raise InvalidInput(f"Invalid {where} {field}: {DAEMON_ID_RULE}", {field: DAEMON_ID_RULE})
    return value


def _optional_time(value: Any) -> str | None:
    return isoformat_z(value) if value is not None else None


def _lease_body(lease: service.Lease) -> dict[str, Any]:
    return {
        "name": lease.name,
        "holder": lease.holder,
        "token": lease.token,
        "acquiredAt": _optional_time(lease.acquired_at),
        "expiresAt": _optional_time(lease.expires_at),
    }


def _held(held: service.Held) -> Response:
    expires_at = isoformat_z(held.expires_at)
    return error_response(409, "Lease held", holder=held.holder, expiresAt=expires_at)


@bp.get("")
def list_leases() -> Response:
    found = service.all_leases(connection(), now=now())
    return jsonify({"leases": [_lease_body(lease) for lease in found]})


@bp.post("/<any_text:name>")
def acquire(name: str) -> Response:
    _identifier(name, "name", "lease")
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    body = parse_body(LeaseRequestIn, request.get_data(cache=False))
    owner = current_caller().owner
    got = service.acquire(connection(), name, body.daemon_id, now=now(), owner=owner)
    if got is None:
        return error_response(404, "Daemon not registered")
    if isinstance(got, service.Held):
        return _held(got)
    return jsonify(_lease_body(got))


@bp.delete("/<any_text:name>")
def release(name: str) -> Response:
    _identifier(name, "name", "lease")
    daemon_id = _identifier(request.args.get("daemonId"), "daemonId", "query parameter")
    try:
        owner = current_caller().owner
        released = service.release(connection(), name, daemon_id, now=now(), owner=owner)
    except service.NotHeld:
        return error_response(404, "Lease not held")
    if isinstance(released, service.Held):
        return _held(released)
    if not released:
        return error_response(404, "Daemon not registered")
    return Response(status=204)
