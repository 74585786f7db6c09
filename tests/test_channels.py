"""Alert channels through Apprise, against real receivers on 127.0.0.1.

Email goes to a real SMTP server (aiosmtpd) that asks for a login; json://
and ntfy:// go to a real HTTP receiver. Time is moved by the clock; only the
slow-channel tests wait on the wall clock, because what they measure is how
long a hung receiver holds up the others.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text

from app import create_app
from app.alerts import channels, watcher
from app.cli import watcher_of
from app.http.context import database
from app.models import alert_deliveries
from config import settings_from_env
from tests.support.api import HEADERS, heartbeat_body, registration
from tests.support.paths import ROOT, VENV_BIN
from tests.support.processes import service_env
from tests.support.smtp_receiver import PASSWORD
from tests.support.watching import settled_tick, watch_for
from tests.support.webhook_receiver import start_receiver, verify_signature

WEBHOOK_SECRET = "webhook-secret-0123456789"
ADMIN_KEY = "channels-admin-key-0123456789"
# A password in a json:// URL, sent as HTTP basic auth: it must never show outside the settings.
JSON_PASSWORD = "json-Secret-41d8e2"


def http_channel(receiver, scheme: str = "json", path: str = "hook", login: str = "") -> str:
    host, port = receiver.server.server_address[:2]
    return f"{scheme}://{login}{host}:{port}/{path}"


def json_channel(receiver, path: str = "hook") -> str:
    return http_channel(receiver, path=path, login=f"alerts:{JSON_PASSWORD}@")


def _deliveries(engine):
    with engine.connect() as conn:
        return conn.execute(select(alert_deliveries).order_by(alert_deliveries.c.id)).all()


def _states_of(engine, daemon_id):
    with engine.connect() as conn:
        return conn.execute(
            select(alert_deliveries.c.state).where(alert_deliveries.c.payload["daemonId"].as_string() == daemon_id)
        ).scalars().all()


def _register(app, **overrides):
    response = app.test_client().post("/api/daemon/register", json=registration(**overrides), headers=HEADERS)
    assert response.status_code == 201, response.get_json()


def _beat(app, **overrides):
    response = app.test_client().post("/api/daemon/heartbeat", json=heartbeat_body(**overrides), headers=HEADERS)
    assert response.status_code == 200, response.get_json()


@pytest.fixture
def watch(clock, senders):
    return lambda app, seconds: watch_for(seconds, app, clock, senders)


def test_a_stale_daemon_sends_one_readable_message_per_channel(
    app, make_app, clock, smtp, receiver, senders, engine, watch
):
    ntfy, webhook = start_receiver(), start_receiver()
    try:
        alerting = make_app(
            alert_channels=channels.parse(f"{smtp.mailto()}\n{json_channel(receiver)}\n{http_channel(ntfy, 'ntfy', 'fleet')}"),
            alert_webhook_urls=(webhook.url,),
            alert_webhook_secret=WEBHOOK_SECRET,
        )
        _register(alerting)
        clock.advance(30)
        _beat(alerting, status="degraded", currentTask="invoice-batch-7", tasksProcessed=1234)
        assert watch(alerting, 91) == ["daemon_macmini_1"]
        clock.advance(10)
        settled_tick(alerting, senders)  # nothing more to send

        [mail] = smtp.messages
        assert smtp.logins == ["LOGIN"] or smtp.logins == ["PLAIN"]  # the password was used, over plain SMTP
        title = "Daemon daemon_macmini_1 is down: no heartbeat since 2026-01-25 12:00:30 UTC"
        body = (
            "daemon_macmini_1 stopped sending heartbeats. Last heard from at 2026-01-25 12:00:30 UTC; "
            "stale since 2026-01-25 12:01:30 UTC.\n"
            "Last status: degraded. Current task: invoice-batch-7. Tasks processed: 1234. Version: 2.2."
        )
        assert mail["Subject"] == title
        assert (mail["From"], mail["To"]) == ("daemon-health@example.com", "ops@example.com")
        plain = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert plain.strip() == body

        [posted] = receiver.received
        assert posted.path == "/hook"
        assert posted.json == {"version": "1.0", "title": title, "message": body, "attachments": [], "type": "failure"}
        [pushed] = ntfy.received
        assert (pushed.json["topic"], pushed.json["title"], pushed.json["message"]) == ("fleet", title, body)

        # The signed webhook is unchanged beside them.
        [hooked] = webhook.received
        assert verify_signature(WEBHOOK_SECRET, hooked)
        assert (hooked.json["type"], hooked.json["daemon"]["currentTask"]) == ("daemon.stale", "invoice-batch-7")
        assert sorted(d.state for d in _deliveries(engine)) == ["delivered"] * 4

        headers = "".join(f"{name}: {mail[name]}\n" for name in ("From", "To", "Subject"))
        print("\n--- the email, as received (headers, then the decoded text) ---\n" + headers + "\n" + plain)
        print("--- the json:// POST body ---\n" + posted.body.decode())
    finally:
        ntfy.stop()
        webhook.stop()


def test_a_recovery_says_how_long_the_daemon_was_down(app, make_app, clock, receiver, senders, watch):
    alerting = make_app(alert_channels=channels.parse(json_channel(receiver)))
    _register(alerting)
    watch(alerting, 61)  # stale since 12:01:00; the watcher's last tick was at 12:01:01
    clock.advance(12 * 60 + 5)
    _register(alerting)
    settled_tick(alerting, senders)
    stale, recovered = (r.json for r in receiver.received)
    assert stale["type"] == "failure" and recovered["type"] == "success"
    assert recovered["title"] == "Daemon daemon_macmini_1 is back after 12 min 6 s down"
    assert recovered["message"].startswith(
        "daemon_macmini_1 registered again at 2026-01-25 12:13:06 UTC, after being down for 12 min 6 s "
        "(stale since 2026-01-25 12:01:00 UTC)."
    )


def test_unhealthy_and_back_name_the_status_and_how_long(app, make_app, clock, receiver, senders):
    # A TTL longer than the wait, so the daemon is still registered when it is better.
    alerting = make_app(alert_channels=channels.parse(json_channel(receiver)), daemon_ttl_seconds=86400)
    _register(alerting)
    _beat(alerting, status="unhealthy", currentTask="resize-42")
    settled_tick(alerting, senders)
    clock.advance(3 * 3600 + 125)
    _beat(alerting, status="healthy", currentTask=None)
    settled_tick(alerting, senders)
    unhealthy, healthy = sorted((r.json for r in receiver.received), key=lambda m: m["type"])
    assert unhealthy["title"] == "Daemon daemon_macmini_1 is unhealthy"
    assert "Current task: resize-42." in unhealthy["message"]
    assert healthy["title"] == "Daemon daemon_macmini_1 is no longer unhealthy"
    assert healthy["message"].startswith(
        "daemon_macmini_1 reported status healthy at 2026-01-25 15:02:05 UTC, after being unhealthy for 3 h 2 min"
    )
    assert "Current task: none." in healthy["message"]


def test_each_channel_gets_only_the_alert_types_its_filter_names(app, make_app, clock, senders, watch):
    pager, chat = start_receiver(), start_receiver()
    try:
        alerting = make_app(
            alert_channels=channels.parse(
                f"daemon.stale,daemon.recovered={http_channel(pager)}  {http_channel(chat)}"
            )
        )
        _register(alerting)
        watch(alerting, 61)
        _register(alerting)  # recovered
        alerting.test_client().delete("/api/daemon/daemon_macmini_1", headers=HEADERS)
        settled_tick(alerting, senders)

        def titles(receiver):  # what follows "Daemon daemon_macmini_1"
            return sorted(m.json["title"].split(" ", 2)[2] for m in receiver.received)

        assert titles(pager) == ["is back after 1 s down", "is down: no heartbeat since 2026-01-25 12:00:00 UTC"]
        assert titles(chat) == titles(pager) + ["was deregistered"]
    finally:
        pager.stop()
        chat.stop()


def test_a_channel_that_answers_500_is_retried_with_backoff_then_delivered(
    app, make_app, clock, receiver, senders, engine, watch
):
    receiver.answer((500, 0), (200, 0))
    alerting = make_app(alert_channels=channels.parse(json_channel(receiver)))
    _register(alerting)
    watch(alerting, 61)
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.attempts) == ("pending", 1)
    assert "error=500" in delivery.last_error
    wait = delivery.next_attempt_at - clock.now()
    assert 2.5 <= wait.total_seconds() <= 5
    settled_tick(alerting, senders)  # not due yet
    assert len(receiver.received) == 1
    clock.advance(wait.total_seconds())
    settled_tick(alerting, senders)
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("delivered", 2, None)
    first, second = receiver.received
    assert first.body == second.body  # the same message each time


def test_a_channel_that_keeps_failing_is_marked_failed_and_can_be_redelivered(
    app, make_app, clock, receiver, senders, engine, watch
):
    receiver.answer((503, 0))
    alerting = make_app(alert_channels=channels.parse(json_channel(receiver)), alert_max_attempts=2)
    _register(alerting)
    watch(alerting, 61 + 60)
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.attempts) == ("failed", 2)
    runner = alerting.test_cli_runner()
    listing = runner.invoke(args=["daemons", "alerts", "failed"]).output
    assert f"{delivery.id:>6}  failed    daemon.stale" in listing
    assert channels.parse(json_channel(receiver))[0].target in listing
    assert "json://alerts:****@127.0.0.1" in listing and "error=503" in listing
    receiver.answer((200, 0))
    assert "queued again" in runner.invoke(args=["daemons", "alerts", "redeliver", str(delivery.id)]).output
    settled_tick(alerting, senders)
    assert _deliveries(engine)[0].state == "delivered"
    assert f"{delivery.id:>6}  delivered" in runner.invoke(args=["daemons", "alerts", "list"]).output


def test_a_hung_channel_holds_up_no_other_channel_or_webhook(app, make_app, clock, senders, engine, watch):
    """One receiver never answers in time, for a whole fleet's alerts; the others get theirs at once.

    Eight daemons go stale together, and a ninth alert comes while the hung
    channel's sends pile up: more of them than the few threads Apprise would
    share between every channel of the process.
    """
    hung, fast, webhook = start_receiver(), start_receiver(), start_receiver()
    timeout = 2
    hung.answer((200, 10.0))
    try:
        alerting = make_app(
            alert_channels=channels.parse(f"{http_channel(hung, path='hung')} {http_channel(fast, path='fast')}"),
            alert_webhook_urls=(webhook.url,),
            alert_webhook_secret=WEBHOOK_SECRET,
            alert_timeout_seconds=timeout,
        )
        for n in range(8):
            _register(alerting, daemonId=f"d{n}")
        watch(alerting, 60)

        def delivered_to_the_others_within(seconds: float) -> float:
            """One tick; how long until every delivery to the fast channel and the webhook is done."""
            started = time.monotonic()
            watcher.tick(watcher_of(alerting), senders)  # hands the deliveries over, waits for none
            while time.monotonic() - started < seconds:
                others = [d.state for d in _deliveries(engine) if "/hung" not in d.url]
                if set(others) == {"delivered"}:
                    return time.monotonic() - started
                time.sleep(0.02)
            raise AssertionError(f"not all delivered within {seconds} s: {others}")

        clock.advance(1)
        # 16 of them, before the hung channel's first sends time out
        first = delivered_to_the_others_within(0.9 * timeout)
        time.sleep(timeout + 0.3)  # the hung channel's first four sends timed out; four more are waiting
        _register(alerting, daemonId="d8")
        alerting.test_client().delete("/api/daemon/d8", headers=HEADERS)
        later = delivered_to_the_others_within(0.9 * timeout)
        assert senders.wait_idle(timeout=10)
        hung_deliveries = [d for d in _deliveries(engine) if "/hung" in d.url]
        assert len(hung_deliveries) == 9
        assert {(d.state, d.last_error) for d in hung_deliveries} == {("pending", "no answer within 2 s")}
        print(f"\nfast channel and webhook done {first:.2f} s and {later:.2f} s after their ticks; "
              f"9 sends to the hung channel cut off after {timeout} s each")
    finally:
        for receiver in (hung, fast, webhook):
            receiver.stop()


def test_secrets_in_channel_urls_stay_out_of_logs_cli_output_and_rows(
    app, make_app, clock, smtp, receiver, senders, engine, caplog, watch
):
    caplog.set_level(logging.DEBUG)
    failing = start_receiver()
    failing.answer((500, 0))
    try:
        entries = f"{smtp.mailto()} {json_channel(receiver)} {json_channel(failing, 'failing')}"
        alerting = make_app(alert_channels=channels.parse(entries), alert_max_attempts=1)
        _register(alerting)
        watch(alerting, 61)
        runner = alerting.test_cli_runner()
        outputs = [runner.invoke(args=["daemons", "alerts", *command]) for command in (["test"], ["list"], ["failed"])]
        assert len(smtp.messages) == 2 and len(receiver.received) == 2  # the alert and the test message
        assert "Basic" in receiver.received[0].headers["authorization"]  # the password was used
        rows = [repr(tuple(d)) for d in _deliveries(engine)]
        assert len(rows) == 3 and any("failed" in row for row in rows)
        everything = "\n".join([caplog.text, *(o.output for o in outputs), *rows, repr(alerting.config)])
        assert "json://alerts:****@127.0.0.1" in everything and "mailto://alerts:****@127.0.0.1" in everything
        for secret in (PASSWORD, JSON_PASSWORD):
            assert secret not in everything
    finally:
        failing.stop()


def test_alerts_test_reaches_every_channel_and_webhook_and_says_how_each_answered(
    app, make_app, smtp, receiver, engine
):
    failing, webhook = start_receiver(), start_receiver()
    failing.answer((500, 0))
    try:
        configured = channels.parse(f"daemon.stale={smtp.mailto()} {json_channel(receiver)} {http_channel(failing)}")
        alerting = make_app(
            alert_channels=configured, alert_webhook_urls=(webhook.url,), alert_webhook_secret=WEBHOOK_SECRET
        )
        result = alerting.test_cli_runner().invoke(args=["daemons", "alerts", "test"])
        assert result.exit_code == 1  # one receiver failed
        lines = result.output.splitlines()
        assert lines == [
            f"ok   {webhook.url}: HTTP 200",
            f"ok   {configured[0].target}: delivered",
            f"ok   {configured[1].target}: delivered",
            f"FAIL {configured[2].target}: Failed to send JSON POST notification: Internal server error., error=500.",
        ]
        [mail] = smtp.messages
        assert mail["Subject"] == "Test alert from the daemon health service"  # the filter does not apply
        assert receiver.received[0].json["title"] == "Test alert from the daemon health service"
        assert verify_signature(WEBHOOK_SECRET, webhook.received[0])
        assert _deliveries(engine) == []  # a test is not an alert
    finally:
        failing.stop()
        webhook.stop()


def test_a_channel_taken_out_of_the_settings_fails_its_pending_deliveries(
    app, make_app, clock, receiver, senders, engine, watch
):
    receiver.answer((500, 0))
    before = make_app(alert_channels=channels.parse(json_channel(receiver)))
    _register(before)
    watch(before, 61)
    after = make_app()
    clock.advance(60)
    settled_tick(after, senders)
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.last_error) == ("failed", "channel no longer in ALERT_CHANNELS")
    assert len(receiver.received) == 1


def test_templates_from_the_templates_dir_replace_the_defaults(app, make_app, clock, receiver, senders, tmp_path, watch):
    (tmp_path / "daemon.stale.txt").write_text(
        "[$alertType] $daemonId silent\n\nRunbook: https://wiki.example.com/daemons/$daemonId (task $currentTask)\n"
    )
    from config import settings_from_env

    templates = settings_from_env({"ADMIN_API_KEY": "k" * 32, "ALERT_TEMPLATES_DIR": str(tmp_path)}).alert_templates
    alerting = make_app(alert_channels=channels.parse(json_channel(receiver)), alert_templates=templates)
    _register(alerting)
    watch(alerting, 61)
    _register(alerting)
    settled_tick(alerting, senders)
    stale, recovered = (r.json for r in receiver.received)
    assert stale["title"] == "[daemon.stale] daemon_macmini_1 silent"
    assert stale["message"] == "Runbook: https://wiki.example.com/daemons/daemon_macmini_1 (task none)"
    assert recovered["title"] == "Daemon daemon_macmini_1 is back after 1 s down"  # no file: the default


def test_the_redacted_form_and_scrub_hide_tokens_headers_and_passwords():
    slack, ntfy, form = channels.parse(
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops "
        "ntfy://127.0.0.1:9/fleet?token=tk_0123456789abcdef "
        "form://127.0.0.1:9/f?+X-Token=hdr-0123456789"
    )
    assert slack.redacted.startswith("slack://T...2/A...D/T...Q/%23ops/")
    assert "tk_0123456789abcdef" not in ntfy.redacted
    assert form.redacted.endswith("&%2BX-Token=****")  # Apprise shows headers; we do not
    error = "HTTPSConnectionPool: Max retries exceeded with url: /services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
    assert slack.scrub(error) == "HTTPSConnectionPool: Max retries exceeded with url: /services/****/****/****"
    assert form.scrub("rejected header hdr-0123456789") == "rejected header ****"
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in repr(slack)
    # The fingerprint names the URL without giving it back, and stays the same.
    assert slack.fingerprint == channels.fingerprint(slack.url) and len(slack.fingerprint) == 16
    assert channels.find((slack, ntfy, form), ntfy.target) is ntfy


def test_the_watch_command_sends_to_channels_from_the_environment_and_prints_no_secret(
    migrated_postgres_url, tmp_path, smtp, receiver
):
    """`flask --app wsgi daemons watch` as operators run it, ALERT_CHANNELS as they write it."""
    refusing = start_receiver()
    refusing.answer((500, 0))
    daemon_id = f"watched-{time.monotonic_ns()}"
    env = service_env(
        ADMIN_API_KEY=ADMIN_KEY,
        DATABASE_URL=migrated_postgres_url,
        DAEMON_TTL_SECONDS="1",
        WATCH_INTERVAL_SECONDS="1",
        ALERT_MAX_ATTEMPTS="1",
        ALERT_CHANNELS=f"""
            daemon.stale={smtp.mailto()}
            {json_channel(receiver)}
            {json_channel(refusing, "refusing")}
        """,
    )
    log_path = tmp_path / "watch.log"
    with open(log_path, "wb") as log:
        watching = subprocess.Popen(
            [str(VENV_BIN / "flask"), "--app", "wsgi", "daemons", "watch"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        app = create_app(settings_from_env(env))
        try:
            response = app.test_client().post(
                "/api/daemon/register", json=registration(daemonId=daemon_id), headers={"X-API-Key": ADMIN_KEY}
            )
            assert response.status_code == 201
            deadline = time.monotonic() + 15
            while not (smtp.messages and receiver.received and refusing.received) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert smtp.messages[0]["Subject"].startswith(f"Daemon {daemon_id} is down")
            assert receiver.received[0].json["title"].startswith(f"Daemon {daemon_id} is down")
            settled = ["delivered", "delivered", "failed"]
            while time.monotonic() < deadline and sorted(_states_of(database(app).engine, daemon_id)) != settled:
                time.sleep(0.1)  # every outcome recorded (and logged)
            watching.send_signal(signal.SIGTERM)
            assert watching.wait(timeout=15) == 0
            listing = subprocess.run(
                [str(VENV_BIN / "flask"), "--app", "wsgi", "daemons", "alerts", "list"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            )
        finally:
            database(app).dispose()
            if watching.poll() is None:
                watching.kill()
                watching.wait(timeout=10)
            refusing.stop()
    output = log_path.read_text()
    assert "alerts to 0 webhook(s) and 3 channel(s)" in output
    assert re.search(r"WARNING app\.alerts\.watcher: alert evt_\d+ daemon\.stale to apprise:[0-9a-f]{16} "
                     r"json://alerts:\*\*\*\*@127\.0\.0\.1:\d+/refusing\S*: Failed to send JSON POST notification", output)
    ours = [line for line in listing.stdout.splitlines() if daemon_id in line]
    assert len(ours) == 3 and sum("failed" in line for line in ours) == 1, listing.stdout
    engine = create_engine(migrated_postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT url, payload::text, state, last_error FROM alert_deliveries WHERE payload->>'daemonId' = :d"),
            {"d": daemon_id},
        ).all()
    engine.dispose()
    assert sorted(row.state for row in rows) == settled
    for secret in (PASSWORD, JSON_PASSWORD):
        assert secret not in output + listing.stdout + listing.stderr + repr(rows)


def test_a_long_channel_url_still_fits_the_outbox(app, make_app, clock, receiver, senders, engine, watch):
    many = ",".join(f"oncall{n}@example.com" for n in range(150))
    [mail] = channels.parse(f"mailto://alerts:{PASSWORD}@127.0.0.1:9?mode=insecure&from=dh@example.com&to={many}")
    assert len(mail.redacted) > 2048 and len(mail.target) < 1100
    alerting = make_app(alert_channels=(mail,), alert_max_attempts=1)
    _register(alerting)
    watch(alerting, 61)
    [delivery] = _deliveries(engine)
    assert delivery.url == mail.target and channels.find([mail], delivery.url) is mail
    assert delivery.state == "failed"  # nothing listens on port 9: sent, and refused


def test_alerts_test_without_webhooks_or_channels_says_what_to_set(app):
    result = app.test_cli_runner().invoke(args=["daemons", "alerts", "test"])
    assert result.exit_code == 1
    assert "neither ALERT_WEBHOOK_URLS nor ALERT_CHANNELS is set" in result.output


def test_a_maintenance_window_keeps_channels_quiet_too(make_app, clock, receiver, engine, watch):
    alerting = make_app(alert_channels=channels.parse(json_channel(receiver)))
    window = {"from": clock.now().isoformat(), "to": (clock.now() + timedelta(minutes=10)).isoformat(),
              "reason": "deploy", "daemonIds": ["daemon_macmini_1"]}
    opened = alerting.test_client().post("/api/maintenance", json=window, headers=HEADERS)
    assert opened.status_code == 201, opened.get_json()
    _register(alerting)
    _register(alerting, daemonId="other")
    assert sorted(watch(alerting, 91)) == ["daemon_macmini_1", "other"]
    assert [r.json["title"] for r in receiver.received] == [
        "Daemon other is down: no heartbeat since 2026-01-25 12:00:00 UTC"
    ]
    assert _states_of(engine, "daemon_macmini_1") == ["suppressed"]
    assert _states_of(engine, "other") == ["delivered"]
