"""Who may call what: API keys of four kinds, and the one table of keyed endpoints.

- admin keys (ADMIN_API_KEY): every keyed endpoint, on every daemon.
- daemon keys (DAEMON_API_KEYS): register, heartbeat, read and deregister, and
  acquire and release leases, only for the daemons registered with that same key.
- read keys (READ_API_KEYS): the read-only views, uptime, the lease list, the maintenance
  windows and /metrics; never
  /api/daemon/health (it reaps), never a write.
- metrics keys (METRICS_API_KEY): /metrics only.

``ACCESS`` names, for each keyed endpoint, the kinds that may call it;
``register_keyed`` is the one place keyed blueprints are registered: it
refuses to start if one of their endpoints is missing from the table, puts the
shared rate limit on them and checks every request against the table.

A key is known by its fingerprint, an HMAC-SHA256 of the key under a fixed
context: the daemons table stores the fingerprint of the key that registered a
row, never the key. The supplied key's fingerprint is looked up, then the key
itself is compared in constant time; the lookup's timing can only tell an
attacker about digests of guesses, which says nothing about a key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask import Blueprint, Flask, Request, Response

from app.http.context import request_globals, this_app, this_request
from app.http.errors import error_response

API_KEY_HEADER = "X-API-Key"
ADMIN, DAEMON, READ, METRICS = "admin", "daemon", "read", "metrics"
FINGERPRINT_CONTEXT = b"daemon-health API key fingerprint v1"
KEYRING = "daemon_health_keyring"


@dataclass(frozen=True, slots=True)
class Rule:
    kinds: frozenset[str]
    bearer: bool = False  # also accept ``Authorization: Bearer <key>`` (Prometheus' way)


def _rule(*kinds: str, bearer: bool = False) -> Rule:
    return Rule(frozenset(kinds), bearer)


ACCESS: Mapping[str, Rule] = {
    "daemons.register": _rule(ADMIN, DAEMON),
    "daemons.heartbeat": _rule(ADMIN, DAEMON),
    "daemons.get_daemon": _rule(ADMIN, DAEMON, READ),
    "daemons.deregister": _rule(ADMIN, DAEMON),
    "daemons.health": _rule(ADMIN),
    "fleet.list_daemons": _rule(ADMIN, READ),
    "fleet.daemons_history": _rule(ADMIN, READ),
    "fleet.list_events": _rule(ADMIN, READ),
    "regions.list_regions": _rule(ADMIN, READ),
    "uptime.fleet_uptime": _rule(ADMIN, READ),
    "uptime.daemon_uptime": _rule(ADMIN, READ),
    "task_metrics.fleet_metrics": _rule(ADMIN, READ),
    "task_metrics.daemon_metrics": _rule(ADMIN, READ),
    "metrics.metrics": _rule(ADMIN, READ, METRICS, bearer=True),
    "leases.list_leases": _rule(ADMIN, READ),
    "leases.acquire": _rule(ADMIN, DAEMON),
    "leases.release": _rule(ADMIN, DAEMON),
    "maintenance.open_window": _rule(ADMIN),
    "maintenance.list_windows": _rule(ADMIN, READ),
    "maintenance.end_window": _rule(ADMIN),
}

# What a refused key may do, for its 403.
ALLOWED = {
    DAEMON: "a daemon key may only register (POST /api/daemon/register), heartbeat "
    "(POST /api/daemon/heartbeat), read (GET /api/daemon/{daemonId}) and deregister "
    "(DELETE /api/daemon/{daemonId}) the daemons registered with it, and acquire and release "
    "leases for them (POST and DELETE /api/leases/{name})",
    READ: "a read key may only read GET /api/daemons, /api/daemons/history, /api/events, /api/regions, /api/daemon/{daemonId}, "
    "/api/daemon/uptime, /api/daemon/{daemonId}/uptime, /api/daemon/metrics, "
    "/api/daemon/{daemonId}/metrics, /api/leases, /api/maintenance and /metrics; "
    "not /api/daemon/health, which removes stale daemons",
    METRICS: "a metrics key may only read GET /metrics",
}


def fingerprint(key: str) -> str:
    return hmac.new(FINGERPRINT_CONTEXT, key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Caller:
    """The request's key: its kind and fingerprint, or neither when missing or wrong."""

    kind: str | None
    fingerprint: str | None = None
    missing: bool = False

    @property
    def owner(self) -> str | None:
        """Whose daemons this caller may act on: its own for a daemon key, None for any."""
        return self.fingerprint if self.kind == DAEMON else None


NO_KEY = Caller(None, missing=True)
WRONG_KEY = Caller(None)


class KeyRing:
    """Every configured key by its fingerprint."""

    def __init__(self, keys: Mapping[str, tuple[str, ...]]) -> None:
        self._by_fingerprint = {
            fingerprint(key): (kind, key) for kind, kind_keys in keys.items() for key in kind_keys
        }

    def identify(self, supplied: str) -> Caller:
        if not supplied:
            return NO_KEY
        supplied_fingerprint = fingerprint(supplied)
        found = self._by_fingerprint.get(supplied_fingerprint)
        if found is None or not hmac.compare_digest(supplied.encode(), found[1].encode()):
            return WRONG_KEY
        return Caller(found[0], supplied_fingerprint)


def current_caller() -> Caller:
    """The caller of this request, identified once (the rate limit and the guard both ask)."""
    scope = request_globals()
    caller = scope.get("caller")
    if caller is None:
        req = this_request()
        rule = ACCESS.get(req.endpoint or "")
        caller = scope.caller = this_app().extensions[KEYRING].identify(_supplied_key(req, rule))
    return caller


def _supplied_key(req: Request, rule: Rule | None) -> str:
    supplied = req.headers.get(API_KEY_HEADER, "")
    if not supplied and rule is not None and rule.bearer:
        bearer = req.headers.get("Authorization", "")
        if bearer.startswith("Bearer "):
            return bearer.removeprefix("Bearer ").strip()
    return supplied


def _check_access() -> Response | None:
    req = this_request()
    rule = ACCESS.get(req.endpoint or "")
    if rule is None:
        return None
    caller = current_caller()
    if caller.missing:
        where = f"the {API_KEY_HEADER} header" + (" or Authorization: Bearer" if rule.bearer else "")
        return error_response(401, f"Missing API key: send it in {where}")
    if caller.kind is None:
        return error_response(401, "Invalid API key")
    if caller.kind not in rule.kinds:
        return error_response(403, f"This key may not call {req.method} {req.path}: "
                                   f"{ALLOWED[caller.kind]}")
    return None


def register_keyed(
    app: Flask, limit: Callable[[Blueprint], None], *blueprints: Blueprint
) -> None:
    """Register the blueprints whose endpoints need a key, with the rate limit and the guard.

    The rate limit's hook (installed by Flask-Limiter before this) runs first,
    so guessing keys is throttled like any other call.
    """
    config = app.config
    app.extensions[KEYRING] = KeyRing(
        {
            ADMIN: config["ADMIN_API_KEYS"],
            DAEMON: config["DAEMON_API_KEYS"],
            READ: config["READ_API_KEYS"],
            METRICS: config["METRICS_API_KEYS"],
        }
    )
    for blueprint in blueprints:
        limit(blueprint)
        app.register_blueprint(blueprint)
    keyed = {blueprint.name for blueprint in blueprints}
    unlisted = sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in keyed and rule.endpoint not in ACCESS
    )
    if unlisted:
        raise RuntimeError(f"Keyed endpoints missing from app.http.auth.ACCESS: {', '.join(unlisted)}")
    app.before_request(_check_access)
