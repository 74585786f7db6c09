"""Operator commands: ``flask --app wsgi daemons ...``."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.alerts import alert_events, error_rate, messages, outbox, senders, watcher
from app.http.context import clock, database, now, settings
from app.leases import holds
from app.maintenance import windows
from app.maintenance.schemas import MaintenanceIn
from app.registry.schemas import InvalidInput, parse_body, parse_timestamp
from app.registry.wire import isoformat_z
from app.task_metrics import buckets
from app.uptime import retention
from app.uptime.period import duration

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
        removed_alerts = alert_events.prune(conn, before=cutoff)
        removed_buckets = buckets.prune(conn, now=now(), before=cutoff)
        removed_holds = holds.prune(conn, before=cutoff)
        removed_windows = windows.prune(conn, before=cutoff)
    click.echo(f"Removed {removed} history events older than {days} days.")
    click.echo(f"Removed {removed_alerts} alert events older than {days} days.")
    click.echo(f"Removed {removed_windows} maintenance windows that ended more than {days} days ago.")
    click.echo(f"Removed {removed_buckets} task buckets (minutes older than 2 days, hours older than {days} days).")
    click.echo(f"Removed {removed_holds} lease holds that ended more than {days} days ago.")


@contextmanager
def _info_log_with_timestamps() -> Iterator[None]:
    """The service's INFO lines on stderr, each with its UTC time, for as long as the command runs.

    Set up here rather than for the whole app, so gunicorn's logging is left alone.
    """
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logger = logging.getLogger("app")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


@daemons_cli.command("watch")
def watch() -> None:
    """Run the watcher: record expiries within seconds and deliver alerts (SIGTERM stops it)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    urls, channels = current_app.config["ALERT_WEBHOOK_URLS"], current_app.config["ALERT_CHANNELS"]
    rule = error_rate.Rule.of(settings())
    click.echo(
        f"Watching every {current_app.config['WATCH_INTERVAL_SECONDS']} s; "
        f"alerts to {len(urls)} webhook(s) and {len(channels)} channel(s): "
        f"{', '.join(current_app.config['ALERT_EVENTS']) if urls or channels else 'none'}; "
        f"error-rate alert: {rule.describe() if rule else 'off'}"
    )
    with _info_log_with_timestamps():
        watcher.run(watcher_of(current_app), stop)
    click.echo("Watcher stopped.")


alerts_cli = AppGroup("alerts", help="Inspect and resend alerts (webhooks and channels).")
daemons_cli.add_command(alerts_cli)


@alerts_cli.command("test")
def send_test_alert() -> None:
    """Send a test alert to every webhook (signed) and channel, and say how each answered.

    Channels are shown by their target (fingerprint and redacted URL), never their URL.
    """
    config = settings(current_app)
    if not (config.alert_webhook_urls or config.alert_channels):
        raise click.ClickException("neither ALERT_WEBHOOK_URLS nor ALERT_CHANNELS is set")
    moment = now()
    to_webhooks = {"id": f"test_{int(moment.timestamp())}", "type": "test", "occurredAt": isoformat_z(moment)}
    to_people = messages.probe_message(moment)
    receivers = [(url, to_webhooks) for url in config.alert_webhook_urls]
    receivers += [(channel.target, to_people) for channel in config.alert_channels]
    failed = 0
    for target, payload in receivers:
        outcome = senders.send(target, payload, config)
        failed += not outcome.delivered
        click.echo(f"{'ok  ' if outcome.delivered else 'FAIL'} {target}: {outcome.detail}")
    if failed:
        raise SystemExit(1)


def _print_deliveries(rows) -> None:
    for row in rows:
        # When it was delivered or given up; for a pending one, when it is tried next.
        when = isoformat_z(row.delivered_at or row.failed_at or row.next_attempt_at)
        click.echo(
            f"{row.id:>6}  {row.state:<9} {row.alert_type:<22} {row.payload.get('daemonId', ''):<24} "
            f"tries={row.attempts} {when}  {row.url}  {row.last_error or ''}".rstrip()
        )


@alerts_cli.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20)
def list_alerts(limit: int) -> None:
    """The most recent alert deliveries, newest first."""
    with database().engine.connect() as conn:
        _print_deliveries(outbox.recent(conn, limit=limit))


@alerts_cli.command("failed")
@click.option("--limit", type=click.IntRange(1, 1000), default=20)
def failed_alerts(limit: int) -> None:
    """Deliveries that gave up; resend one with 'redeliver ID'."""
    with database().engine.connect() as conn:
        _print_deliveries(outbox.recent(conn, state="failed", limit=limit))


@alerts_cli.command("redeliver")
@click.argument("delivery_id", type=int)
def redeliver(delivery_id: int) -> None:
    """Queue one delivery again; the watcher sends it on its next tick."""
    with database().engine.connect() as conn:
        if not outbox.redeliver(conn, delivery_id, now=now()):
            raise click.ClickException(f"no delivery {delivery_id}")
    click.echo(f"Delivery {delivery_id} queued again.")


maintenance_cli = AppGroup("maintenance", help="Open, list and end maintenance windows.")
daemons_cli.add_command(maintenance_cli)


@maintenance_cli.command("start")
@click.option(
    "--daemon", "daemon_ids", multiple=True, metavar="ID", help="Cover this daemon (repeatable)."
)
@click.option("--capability", help="Cover every daemon with this capability.")
@click.option("--region", help="Cover every daemon in this region.")
@click.option("--from", "starts", metavar="TIME", help="ISO-8601 start (default: now).")
@click.option("--to", "ends", metavar="TIME", help="ISO-8601 end.")
@click.option("--for", "length", metavar="DURATION", help="Length instead of --to: 30m, 2h, 1d.")
@click.option("--reason", required=True, help="What the work is (shown to operators).")
def start_maintenance(
    daemon_ids: tuple[str, ...], capability: str | None, region: str | None, starts: str | None,
    ends: str | None, length: str | None, reason: str,
) -> None:
    """Open a window (the whole fleet unless --daemon, --capability or --region) and print its id.

    Only the id goes to stdout, so a deploy script can keep it:
    WINDOW=$(flask --app wsgi daemons maintenance start --capability cron --for 30m --reason deploy)
    """
    if (ends is None) == (length is None):
        raise click.UsageError("give exactly one of --to and --for")
    start = now() if starts is None else _cli_timestamp("--from", starts)
    if length is not None:
        span = duration(length)
        if span is None:
            raise click.BadParameter(
                "must be a number and a unit m, h or d (e.g. 30m, 2h, 1d)", param_hint="--for"
            )
        end = start + span
    else:
        end = _cli_timestamp("--to", ends)
    body = {"from": isoformat_z(start), "to": isoformat_z(end), "reason": reason}
    if daemon_ids:
        body["daemonIds"] = list(daemon_ids)
    if capability is not None:
        body["capability"] = capability
    if region is not None:
        body["region"] = region
    try:
        spec = windows.check(parse_body(MaintenanceIn, json.dumps(body).encode()), now=now())
    except InvalidInput as exc:
        # Named as the command's options, not the API's fields.
        problems = "; ".join(
            f"{_OPTIONS.get(field.split('[')[0], field)} {message}" for field, message in exc.details.items()
        )
        raise click.ClickException(problems or exc.message) from None
    with database().engine.connect() as conn:
        window = windows.create(conn, spec, now=now())
    click.echo(window["id"])
    click.echo(_describe_window(window), err=True)


_OPTIONS = {"from": "--from", "to": "--to/--for", "reason": "--reason", "daemonIds": "--daemon",
            "capability": "--capability", "region": "--region"}


def _cli_timestamp(option: str, value: str) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _describe_window(window: dict) -> str:
    covers = (
        f"daemons {', '.join(window['daemonIds'])}" if window["daemonIds"] is not None
        else f"capability {window['capability']}" if window["capability"] is not None
        else f"region {window['region']}" if window["region"] is not None
        else "the whole fleet"
    )
    when = f"{window['from']} to {window['to']}"
    return f"{window['id']:>6}  {window['state']:<9} {when}  {covers}: {window['reason']}"


@maintenance_cli.command("list")
def list_maintenance() -> None:
    """Current and upcoming windows, the soonest first."""
    with database().engine.connect() as conn:
        for window in windows.current_and_upcoming(conn, now=now()):
            click.echo(_describe_window(window))


@maintenance_cli.command("end")
@click.argument("window_id", type=click.IntRange(min=1))
def end_maintenance(window_id: int) -> None:
    """End a window now (one that has not started is cancelled)."""
    with database().engine.connect() as conn:
        window = windows.end(conn, window_id, now=now())
    if window is None:
        raise click.ClickException(f"no maintenance window {window_id}")
    click.echo(_describe_window(window))


def watcher_of(app: Flask) -> watcher.Watcher:
    """The watcher for ``app``'s settings, clock and database."""
    return watcher.Watcher(settings(app), clock(app), database(app).engine)


def init_app(app: Flask) -> None:
    app.cli.add_command(daemons_cli)
