"""The watcher as operators run it: `flask --app wsgi daemons watch`, a real process."""

from __future__ import annotations

import re
import signal
import subprocess
import time

from sqlalchemy import create_engine, text

from app import create_app
from app.http.context import database
from config import settings_from_env
from tests.support.api import registration
from tests.support.paths import ROOT, VENV_BIN
from tests.support.processes import service_env
from tests.support.webhook_receiver import start_receiver, verify_signature

SECRET = "webhook-secret-0123456789"
ADMIN_KEY = "watch-admin-key-0123456789"


def test_watch_command_alerts_on_expiry_and_stops_on_sigterm(migrated_postgres_url, tmp_path):
    receiver = start_receiver()
    daemon_id = f"watched-{time.monotonic_ns()}"
    env = service_env(
        ADMIN_API_KEY=ADMIN_KEY,
        DATABASE_URL=migrated_postgres_url,
        DAEMON_TTL_SECONDS="1",
        WATCH_INTERVAL_SECONDS="1",
        ALERT_WEBHOOK_URLS=receiver.url,
        ALERT_WEBHOOK_SECRET=SECRET,
        ALERT_EVENTS="daemon.stale",
    )
    log = open(tmp_path / "watch.log", "wb")  # noqa: SIM115
    watcher = subprocess.Popen(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "daemons", "watch"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    app = None
    try:
        app = create_app(settings_from_env(env))
        client = app.test_client()
        response = client.post(
            "/api/daemon/register", json=registration(daemonId=daemon_id), headers={"X-API-Key": ADMIN_KEY}
        )
        assert response.status_code == 201
        deadline = time.monotonic() + 15
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
        [alert] = receiver.received
        assert alert.json["type"] == "daemon.stale" and alert.json["daemonId"] == daemon_id
        assert verify_signature(SECRET, alert)
        # The watcher did not take /health's report: the stale daemon is listed once.
        health = client.get("/api/daemon/health", headers={"X-API-Key": ADMIN_KEY}).get_json()
        assert daemon_id in [d["daemonId"] for d in health["stale"]]
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=15) == 0
    finally:
        if app is not None:
            database(app).dispose()
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=10)
        log.close()
        receiver.stop()
    output = (tmp_path / "watch.log").read_text()
    assert "Watching every 1 s" in output and "Watcher stopped." in output
    # What an operator reads in journald or a log file: INFO lines, each with its UTC time.
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.search(rf"^{stamp} INFO app\.alerts\.watcher: stale: {daemon_id}$", output, re.MULTILINE), output
    assert re.search(rf"^{stamp} INFO app\.alerts\.watcher: alert evt_\d+ daemon\.stale to {re.escape(receiver.url)}: HTTP 200$",
                     output, re.MULTILINE), output
    logged = [line for line in output.splitlines() if not line.startswith(("Watching every", "Watcher stopped."))]
    assert all(re.match(rf"{stamp} (INFO|WARNING|ERROR) ", line) for line in logged), output
    engine = create_engine(migrated_postgres_url)
    with engine.connect() as conn:
        delivered = conn.execute(
            text("SELECT state FROM alert_deliveries WHERE payload->>'daemonId' = :d"), {"d": daemon_id}
        ).scalars().all()
    engine.dispose()
    assert delivered == ["delivered"]
