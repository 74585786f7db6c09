"""Operator commands: ``flask --app wsgi daemons ...``."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.clock import now
from app.db import database
from app.uptime import retention

daemons_cli = AppGroup("daemons", help="Manage the daemon registry and its history.")


@daemons_cli.command("prune-history")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep this many days of history (default: HISTORY_RETENTION_DAYS).",
)
def prune_history(days: int | None) -> None:
    """Delete history older than the retention period (run it daily from cron)."""
    days = days or current_app.config["HISTORY_RETENTION_DAYS"]
    cutoff = now() - timedelta(days=days)
    with database().engine.connect() as conn:
        removed = retention.prune(conn, before=cutoff)
    click.echo(f"Removed {removed} history events older than {days} days.")


def init_app(app: Flask) -> None:
    app.cli.add_command(daemons_cli)
