"""Daemon health service: a live registry of worker daemons and their heartbeats."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import cli
from app.clock import Clock
from app.http import auth, context, errors, limiter, request_metrics
from app.http.body_limit import BodyLimit
from app.http.converters import AnyTextConverter, DaemonIdConverter
from app.http.flask_app import ServiceFlask
from app.http.dashboard.routes import bp as dashboard_bp
from app.http.fleet import bp as fleet_bp
from app.http.leases import bp as leases_bp
from app.http.maintenance import bp as maintenance_bp
from app.http.metrics import bp as metrics_bp
from app.http.openapi.document import bp as openapi_bp
from app.http.registry import PROBE_KEY
from app.http.regions import bp as regions_bp
from app.http.registry import bp as daemons_bp
from app.http.task_metrics import bp as task_metrics_bp
from app.http.uptime import bp as uptime_bp
from app.registry import outage_grace
from config import Settings, settings_from_env


def create_app(config: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the app from ``config`` (default: the environment) and ``clock``."""
    settings = config if config is not None else settings_from_env()
    app = ServiceFlask(__name__)
    app.url_map.converters["daemon_id"] = DaemonIdConverter
    app.url_map.converters["any_text"] = AnyTextConverter
    # A 308 to a "cleaned" path would be an HTML answer for a path nobody needs: 404 it.
    app.url_map.merge_slashes = False
    app.config.update(settings.flask_config())
    app.json.sort_keys = False  # keep the specification's field order
    context.init_app(app, settings, clock)
    app.extensions[PROBE_KEY] = outage_grace.Probe()

    if settings.trusted_proxy_hops:
        # Only ProxyFix reads X-Forwarded-For, and only the configured number of hops.
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.wsgi_app = BodyLimit(app.wsgi_app, settings.max_content_length)

    errors.init_app(app)
    cli.init_app(app)
    rate_limit = limiter.init_app(app)
    request_metrics.init_app(app)
    # Every blueprint whose endpoints take a key, in one place: key check and rate limit.
    auth.register_keyed(
        app, rate_limit, metrics_bp, fleet_bp, regions_bp, uptime_bp, task_metrics_bp, daemons_bp,
        leases_bp, maintenance_bp,
    )
    app.register_blueprint(openapi_bp)
    app.register_blueprint(dashboard_bp)
    return app
